"""`make cluster-up` / `cluster-down` semantics: a usable env file, a status a person can read,
and nothing left behind on the host, with the real node and without it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROL_PLANE = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
# What kubelet would change on the host if the node's mount namespace did not shadow it.
SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")


def run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "aiops_harness.localcluster", *args],
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _lines(*cmd: str) -> set[str]:
    return set(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines())


def host_snapshot(state: Path) -> dict[str, object]:
    """What a cluster could leave on the host: processes, mounts, links, netns, nft tables,
    routes, cgroups and the sysctls kubelet sets."""
    processes = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(state) in cmdline:
                processes.add(cmdline)
    return {
        "processes": processes,
        "mounts": {m for m in Path("/proc/self/mounts").read_text().splitlines()},
        "links": {line.split(":")[1].strip() for line in _lines("ip", "-o", "link", "show")},
        "routes": _lines("ip", "route", "show"),
        "netns": _lines("ip", "netns", "list"),
        "nft": _lines("nft", "list", "tables"),
        "cgroups": {str(p) for p in Path("/sys/fs/cgroup").glob("*/*") if p.is_dir()},
        "sysctls": {name: Path(f"/proc/sys/{name}").read_text() for name in SYSCTLS},
    }


def test_up_status_down_twice_leaves_no_process_or_port_behind(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for _cycle in range(2):
        up = run("up", "--state-dir", str(state), "--node", "kwok")
        assert up.returncode == 0, up.stderr + up.stdout
        pids = {f.stem: int(f.read_text()) for f in (state / "pids").glob("*.pid")}
        ports = json.loads((state / "ports.json").read_text())
        assert set(pids) == CONTROL_PLANE
        assert all(pid_alive(pid) for pid in pids.values())

        status = run("status", "--state-dir", str(state), "--json")
        assert status.returncode == 0
        assert json.loads(status.stdout)["apiserverReady"] is True

        # The env file is what a person sources: it must point kubectl at this cluster.
        nodes = subprocess.run(
            ["bash", "-c", f". {state / 'env'} && kubectl get nodes -o name"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert nodes.stdout.strip() == "node/kwok-node-0"

        down = run("down", "--state-dir", str(state))
        assert down.returncode == 0
        assert not any(pid_alive(pid) for pid in pids.values())
        assert all(port_is_free(port) for port in ports.values())
        assert not (state / "kubeconfig").exists()
        assert (state / "logs" / "kube-apiserver.log").exists()

    stopped = run("status", "--state-dir", str(state), "--json")
    assert stopped.returncode == 1
    assert json.loads(stopped.stdout)["apiserverReady"] is False


def test_the_real_node_runs_a_pod_and_leaves_the_host_as_it_was(tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = host_snapshot(state)
    up = run("up", "--state-dir", str(state), "--node", "real")
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        status = run("status", "--state-dir", str(state), "--json")
        nodes = {n["name"]: n for n in json.loads(status.stdout)["nodes"]}
        assert nodes["aiops-node-0"] == {"name": "aiops-node-0", "real": True, "ready": True}
        assert nodes["kwok-node-0"]["real"] is False
        # What a person reads: where the API is, what to source, which nodes are real.
        human = run("status", "--state-dir", str(state)).stdout
        assert "aiops-node-0" in human
        assert "real" in human
        assert str(state / "env") in human
        during = host_snapshot(state)
        # The node's nft tables, netns and sysctls stay inside its namespaces.
        assert during["nft"] == before["nft"]
        assert during["netns"] == before["netns"]
        assert during["sysctls"] == before["sysctls"]
    finally:
        down = run("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    after = host_snapshot(state)
    for key, value in before.items():
        assert after[key] == value, f"{key} changed: {after[key]!r} != {value!r}"


def test_gitops_up_and_down_three_times_leave_no_process_or_port_behind(tmp_path: Path) -> None:
    """`make gitops-up` / `gitops-down` on a running cluster (KWOK only: the stack does not
    care about the node); `make cluster-down` runs the same `down` first."""
    gitops = [sys.executable, "-m", "aiops_harness.gitops"]
    state = tmp_path / "state"
    up = run("up", "--state-dir", str(state), "--node", "kwok")
    assert up.returncode == 0, up.stderr + up.stdout
    try:
        for cycle in range(3):
            started = subprocess.run([*gitops, "up", "--cluster-state", str(state)],
                                     capture_output=True, text=True, timeout=1200)  # fmt: skip
            assert started.returncode == 0, started.stderr + started.stdout
            assert started.stdout.strip().splitlines()[-1].startswith("git=git://127.0.0.1:")
            pids = {f.stem: int(f.read_text()) for f in (state / "gitops" / "pids").glob("*.pid")}
            ports = json.loads((state / "gitops" / "ports.json").read_text())
            assert set(pids) == {"redis", "git-daemon", "argocd-repo-server",
                                 "argocd-application-controller"}  # fmt: skip
            assert all(pid_alive(pid) for pid in pids.values())
            down = subprocess.run([*gitops, "down", "--cluster-state", str(state)],
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
            assert down.returncode == 0, down.stderr
            assert "argocd-application-controller" in down.stdout
            assert not any(pid_alive(pid) for pid in pids.values()), cycle
            assert all(port_is_free(port) for port in ports.values()), cycle
            assert not (state / "gitops" / "git").exists()
    finally:
        run("down", "--state-dir", str(state))

"""`make cluster-up` / `cluster-down` semantics: a usable env file, and nothing left behind."""

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
SCRIPT = REPO_ROOT / "hack" / "localcluster.py"


def run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=180, **kwargs
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


def test_up_status_down_twice_leaves_no_process_or_port_behind(tmp_path):
    state = tmp_path / "state"
    for _cycle in range(2):
        up = run("up", "--state-dir", str(state))
        assert up.returncode == 0, up.stderr + up.stdout
        pids = {f.stem: int(f.read_text()) for f in (state / "pids").glob("*.pid")}
        ports = json.loads((state / "ports.json").read_text())
        assert set(pids) == {
            "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
        }  # fmt: skip
        assert all(pid_alive(pid) for pid in pids.values())

        status = run("status", "--state-dir", str(state))
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

    stopped = run("status", "--state-dir", str(state))
    assert stopped.returncode == 1
    assert json.loads(stopped.stdout)["apiserverReady"] is False

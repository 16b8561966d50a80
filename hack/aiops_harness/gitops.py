"""A real Argo CD beside the local cluster: its repo-server and application-controller (built by
hack/argocd-build.sh from the pinned Go module), Debian's Redis as their cache, and a local Git
server (`git daemon`, git://, anonymous push) holding one bare repository.

Argo CD is configured as a standard install is, in namespace `argocd` of the cluster: its CRDs,
`argocd-cm` (with our shipped health check merged in from argocd/argocd-cm-patch.yaml),
`argocd-rbac-cm`, `argocd-cmd-params-cm`, `argocd-secret` and the `default` AppProject. Its
components run as local processes next to the control plane (out of cluster, as upstream's
Procfile runs them: `ARGOCD_FAKE_IN_CLUSTER=true` makes https://kubernetes.default.svc mean the
kubeconfig's cluster).

Reconciliation is quick by refresh on push, as a Git server's webhook does it: the repository's
post-receive hook annotates every Application `argocd.argoproj.io/refresh=normal`. The periodic
resync stays at `RESYNC_S`. No argocd-server runs (no UI, no webhook endpoint, no SSO).

    python3 -m aiops_harness.gitops up|down|status [--cluster-state .cluster]

`up` prints `git=<URL>` as its last line: the repository Argo CD reads and anyone may push to.
State (PIDs, logs, the repository) lives in <cluster-state>/gitops; `down` stops what `up`
started, by PID, and removes it. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiops_harness import localcluster, realnode

REPO_ROOT = Path(__file__).resolve().parents[2]
ARGOCD_BUILD = REPO_ROOT / "hack" / "argocd-build.sh"
CRDS_SCRIPT = REPO_ROOT / "hack" / "third-party-crds.sh"
CM_PATCH = REPO_ROOT / "argocd" / "argocd-cm-patch.yaml"
NAMESPACE = "argocd"
REPOSITORY = "aiops-quality.git"
COMPONENTS = ("redis", "git-daemon", "argocd-repo-server", "argocd-application-controller")
RESYNC_S = 60
# What the controller's settings manager selects its ConfigMaps and Secrets by.
PART_OF = {"app.kubernetes.io/part-of": "argocd"}
# argocd-cmd-params-cm, and the environment variable the standard install's controller reads
# each key from. Since v3.0 Argo CD keeps each resource's health out of Application.status
# unless asked: we ask, so that `kubectl get application -o yaml` shows the ModelService's.
CMD_PARAMS = {"controller.resource.health.persist": "true"}
CMD_PARAMS_ENV = {
    "controller.resource.health.persist": "ARGOCD_APPLICATION_CONTROLLER_PERSIST_RESOURCE_HEALTH",
}


class GitOpsError(RuntimeError):
    """The GitOps stack cannot start or is not healthy."""


def build_argocd() -> Path:
    """The directory holding argocd, its component symlinks and the wrappers it runs."""
    proc = subprocess.run(["bash", str(ARGOCD_BUILD)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise GitOpsError(f"building Argo CD failed:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def argocd_crds() -> list[Path]:
    """Argo CD's Application and AppProject CRDs, from the pinned module."""
    proc = subprocess.run(["bash", str(CRDS_SCRIPT)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise GitOpsError(f"{CRDS_SCRIPT.name} failed:\n{proc.stderr[-4000:]}")
    found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return [Path(found["application"]), Path(found["appproject"])]


def helm_dir() -> Path:
    """The pinned helm's directory (the repo-server renders our charts with it)."""
    tools = REPO_ROOT / "hack" / "tools-build.sh"
    proc = subprocess.run(["bash", str(tools), "helm"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise GitOpsError(f"building helm failed:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _manifest(kind: str, name: str, **body: object) -> dict[str, object]:
    api = "argoproj.io/v1alpha1" if kind == "AppProject" else "v1"
    meta = {"name": name, "namespace": NAMESPACE, "labels": PART_OF}
    return {"apiVersion": api, "kind": kind, "metadata": meta, **body}


def settings_manifests(resync_s: int = RESYNC_S) -> list[dict[str, object]]:
    """The objects a standard install creates in `argocd` before our health check is merged."""
    default_project = {
        "sourceRepos": ["*"],
        "destinations": [{"server": "*", "namespace": "*"}],
        "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
    }
    return [
        _manifest("ConfigMap", "argocd-cm", data={"timeout.reconciliation": f"{resync_s}s"}),
        _manifest("ConfigMap", "argocd-rbac-cm"),
        _manifest("ConfigMap", "argocd-cmd-params-cm", data=CMD_PARAMS),
        _manifest("ConfigMap", "argocd-ssh-known-hosts-cm"),
        _manifest("ConfigMap", "argocd-tls-certs-cm"),
        _manifest("ConfigMap", "argocd-gpg-keys-cm"),
        _manifest("Secret", "argocd-secret", stringData={"server.secretkey": os.urandom(16).hex()}),
        _manifest("AppProject", "default", spec=default_project),
    ]


@dataclass
class GitOps:
    """The stack of one local cluster; its state lives in `<cluster state>/gitops`."""

    cluster: localcluster.LocalCluster

    @property
    def state_dir(self) -> Path:
        return self.cluster.state_dir / "gitops"

    @property
    def git_url(self) -> str:
        ports = json.loads((self.state_dir / "ports.json").read_text())
        return f"git://127.0.0.1:{ports['git']}/{REPOSITORY}"

    @property
    def pod_git_url(self) -> str:
        """The repository as pods on the real node reach it (the host end of the node's link)."""
        return self.git_url.replace("//127.0.0.1:", f"//{self.cluster.address}:", 1)

    @property
    def repository(self) -> Path:
        return self.state_dir / "git" / REPOSITORY

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> None:
        """Start every component; return when Argo CD's controller lists Applications."""
        if self.running_pids():
            raise GitOpsError(f"a GitOps stack already runs from {self.state_dir}; stop it first")
        argocd_bin, helm = build_argocd(), helm_dir()
        self._reset_state()
        ports = {
            name: localcluster.free_port()
            for name in ("git", "redis", "repo", "repo-metrics", "ctrl")
        }
        (self.state_dir / "ports.json").write_text(json.dumps(ports))
        deadline = time.monotonic() + timeout
        try:
            self._init_repository()
            self._configure_cluster()
            self._spawn("redis", ["redis-server", "--bind", "127.0.0.1", "--port",
                                  str(ports["redis"]), "--save", "", "--appendonly", "no",
                                  "--dir", str(self.state_dir / "redis")])  # fmt: skip
            # Loopback for Argo CD and people; with a real node also the host end of its link,
            # where pods reach the host (a CI job running as a pod clones and pushes there).
            listen = [f"--listen={a}" for a in dict.fromkeys(("127.0.0.1", self.cluster.address))]
            self._spawn("git-daemon", ["git", "daemon", *listen,
                                       f"--port={ports['git']}", "--reuseaddr", "--export-all",
                                       "--enable=receive-pack",
                                       f"--base-path={self.state_dir / 'git'}",
                                       str(self.state_dir / "git")])  # fmt: skip
            env = {
                # the wrappers first: without git-verify-wrapper.sh every generation fails
                "PATH": f"{argocd_bin}{os.pathsep}{helm}{os.pathsep}{os.environ['PATH']}",
                "HOME": str(self.state_dir / "home"),
                "TMPDIR": str(self.state_dir / "tmp"),
                "ARGOCD_GPG_ENABLED": "false",
                "ARGOCD_TLS_DATA_PATH": str(self.state_dir / "tls"),
                "ARGOCD_SSH_DATA_PATH": str(self.state_dir / "ssh"),
                "ARGOCD_FAKE_IN_CLUSTER": "true",
                "KUBECONFIG": str(self.cluster.kubeconfig),
                "HOSTNAME": "argocd-application-controller-0",
                **{CMD_PARAMS_ENV[key]: value for key, value in CMD_PARAMS.items()},
            }
            redis = f"127.0.0.1:{ports['redis']}"
            self._spawn("argocd-repo-server", [
                str(argocd_bin / "argocd-repo-server"), "--address", "127.0.0.1",
                "--port", str(ports["repo"]), "--metrics-port", str(ports["repo-metrics"]),
                "--disable-tls", "--client-ca-path", "", "--redis", redis,
                "--logformat", "json",
            ], env)  # fmt: skip
            self._spawn("argocd-application-controller", [
                str(argocd_bin / "argocd-application-controller"),
                "--kubeconfig", str(self.cluster.kubeconfig), "--namespace", NAMESPACE,
                "--repo-server", f"127.0.0.1:{ports['repo']}", "--repo-server-plaintext",
                "--redis", redis, "--metrics-port", str(ports["ctrl"]),
                "--app-resync", str(RESYNC_S), "--hydrator-enabled=false",
                "--logformat", "json",
            ], env)  # fmt: skip
            self._wait(deadline, "the application controller's metrics",
                       lambda: self._metrics_up("ctrl"))  # fmt: skip
            self._wait(deadline, "the repo-server's metrics",
                       lambda: self._metrics_up("repo-metrics"))  # fmt: skip
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process `start` spawned (by PID) and remove the state (logs are kept)."""
        localcluster.stop_processes(self.running_pids(), grace_s=10)
        self._reset_state(keep_dir=False)

    def running_pids(self) -> dict[str, int]:
        return localcluster.live_pids(self.state_dir / "pids")

    def status(self) -> dict[str, object]:
        pids = self.running_pids()
        return {
            "components": {c: pids.get(c) for c in COMPONENTS},
            "git": self.git_url if pids else None,
        }

    # --- pieces -------------------------------------------------------------------------------

    def _init_repository(self) -> None:
        """The bare repository, whose post-receive hook refreshes every Application."""
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.repository)],
                       check=True)  # fmt: skip
        kubectl = self.cluster.bin_dir / "kubectl"
        hook = self.repository / "hooks" / "post-receive"
        hook.write_text(
            "#!/bin/sh\n"
            "# The Git server's webhook: ask Argo CD to look at the new commits now.\n"
            f"exec {kubectl} --kubeconfig {self.cluster.kubeconfig} -n {NAMESPACE} annotate"
            " applications --all --overwrite argocd.argoproj.io/refresh=normal >/dev/null\n"
        )
        hook.chmod(0o755)

    def _configure_cluster(self) -> None:
        for crd in argocd_crds():
            self.cluster.apply_crd(crd)
        self.cluster.kubectl("create", "namespace", NAMESPACE, check=False)
        manifests = {"apiVersion": "v1", "kind": "List", "items": settings_manifests()}
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(manifests))
        # Our health check, from the file users merge (docs/argocd.md).
        self.cluster.kubectl("-n", NAMESPACE, "patch", "configmap", "argocd-cm", "--type",
                             "merge", "--patch-file", str(CM_PATCH))  # fmt: skip

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        localcluster.spawn(self.state_dir, name, args, {**os.environ, **(env or {})})

    def _metrics_up(self, port_name: str) -> bool:
        port = json.loads((self.state_dir / "ports.json").read_text())[port_name]
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        return False

    def _wait(self, deadline: float, what: str, probe) -> None:  # type: ignore[no-untyped-def]
        while time.monotonic() < deadline:
            for name, pid_file in ((p.stem, p) for p in (self.state_dir / "pids").glob("*.pid")):
                if not realnode.pid_alive(int(pid_file.read_text())):
                    log = (self.state_dir / "logs" / f"{name}.log").read_text()[-3000:]
                    raise GitOpsError(f"{name} exited while waiting for {what}:\n{log}")
            if probe():
                return
            time.sleep(0.3)
        raise GitOpsError(f"timed out waiting for {what}; logs in {self.state_dir / 'logs'}")

    def _reset_state(self, keep_dir: bool = True) -> None:
        for child in ("pids", "git", "redis", "home", "tmp", "tls", "ssh"):
            shutil.rmtree(self.state_dir / child, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "ports.json").unlink()
        if keep_dir:
            for child in ("pids", "logs", "git", "redis", "home", "tmp", "tls", "ssh"):
                (self.state_dir / child).mkdir(parents=True, exist_ok=True)


def for_cluster(state_dir: Path) -> GitOps:
    """The stack of the cluster whose state is in `state_dir` (running or not)."""
    bin_dir = Path("/nonexistent")
    if (state_dir / "ports.json").exists():
        bin_dir, _ = localcluster.build_binaries()
    cluster = localcluster.LocalCluster(state_dir=state_dir, bin_dir=bin_dir)
    cluster.status()  # loads the ports and the API server's address
    return GitOps(cluster)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--cluster-state", type=Path, default=REPO_ROOT / ".cluster")
    args = parser.parse_args(argv)
    state_dir = args.cluster_state.resolve()
    if args.command == "down":
        stack = GitOps(localcluster.LocalCluster(state_dir=state_dir, bin_dir=Path("/nonexistent")))
        stopped = sorted(stack.running_pids())
        stack.stop()
        print(f"gitops stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    if args.command == "status":
        stack = GitOps(localcluster.LocalCluster(state_dir=state_dir, bin_dir=Path("/nonexistent")))
        print(json.dumps(stack.status(), indent=2))
        return 0 if stack.running_pids() else 1
    if not localcluster.LocalCluster(state_dir, Path("/nonexistent")).running_pids():
        print(f"error: no local cluster runs from {state_dir}: make cluster-up first",
              file=sys.stderr)  # fmt: skip
        return 1
    started = time.monotonic()
    stack = for_cluster(state_dir)
    try:
        stack.start()
    except (GitOpsError, localcluster.ClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Argo CD {', '.join(COMPONENTS)} ready in {time.monotonic() - started:.1f}s;"
          f" logs in {stack.state_dir / 'logs'}")  # fmt: skip
    print(f"git={stack.git_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

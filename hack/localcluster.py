"""A real, local Kubernetes control plane without a container engine.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as local processes on free
loopback ports; KWOK plays the kubelet of one fake node, so pods of a Deployment become Running and
Ready. Certificates are generated at start. `make cluster-up` and the pytest fixture both use this
module. Standard library only, so it runs before any virtualenv exists.

    python3 hack/localcluster.py up|down|status [--state-dir .cluster]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "hack" / "control-plane-build.sh"
NODE_NAME = "kwok-node-0"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_CIDR = "10.96.0.0/16"


class ClusterError(RuntimeError):
    """The control plane could not be started or does not answer."""


def build_binaries() -> tuple[Path, Path]:
    """Build (or reuse from the per-user cache) the pinned binaries.

    Returns the directory of the binaries and the KWOK stage file.
    """
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"building the control plane failed:\n{proc.stderr[-4000:]}")
    found = dict(
        line.split("=", 1) for line in proc.stdout.splitlines() if line.startswith(("bin=", "kwok"))
    )
    return Path(found["bin"]), Path(found["kwok_stages"])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def generate_pki(pki: Path) -> None:
    """A throw-away CA, the API server's serving cert, client certs and the SA signing key."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=pki)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "3650",
        "-subj", "/CN=aiops-local-ca", "-out", "ca.crt", cwd=pki,
    )  # fmt: skip
    (pki / "san.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
    )
    (pki / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n"
    )
    certs = {
        "apiserver": ("/CN=kube-apiserver", "san.ext"),
        "admin": ("/O=system:masters/CN=local-admin", "client.ext"),
        "controller-manager": ("/CN=system:kube-controller-manager", "client.ext"),
        "scheduler": ("/CN=system:kube-scheduler", "client.ext"),
        "kwok": ("/O=system:masters/CN=kwok", "client.ext"),
    }
    for name, (subject, ext) in certs.items():
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key",
                 cwd=pki)  # fmt: skip
        _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr",
                 cwd=pki)  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", ext, "-out", f"{name}.crt",
            cwd=pki,
        )  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, ca: Path, user: dict[str, str]) -> None:
    """Write a kubeconfig (JSON is valid YAML) for one user at one server."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}
        ],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "user"}}],
        "current-context": "local",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def _cert_user(pki: Path, name: str) -> dict[str, str]:
    return {
        "client-certificate-data": _b64(pki / f"{name}.crt"),
        "client-key-data": _b64(pki / f"{name}.key"),
    }


@dataclass
class LocalCluster:
    """A control plane whose state (PIDs, logs, certs, etcd data) lives in `state_dir`."""

    state_dir: Path
    bin_dir: Path
    kwok_stages: Path = Path("/nonexistent")
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        """Start every component and return when the cluster can run a Deployment to Ready."""
        if self.running_pids():
            raise ClusterError(f"a control plane already runs from {self.state_dir}; stop it first")
        self._reset_state()
        pki = self.state_dir / "pki"
        generate_pki(pki)
        self.ports = {
            name: free_port()
            for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler")
        }
        self.ports.update(kwok=free_port(), kwok_metrics=free_port())
        (self.state_dir / "ports.json").write_text(json.dumps(self.ports))
        write_kubeconfig(self.kubeconfig, self.server, pki / "ca.crt", _cert_user(pki, "admin"))
        for name in ("controller-manager", "scheduler", "kwok"):
            write_kubeconfig(
                self.state_dir / f"{name}.kubeconfig", self.server, pki / "ca.crt",
                _cert_user(pki, name),
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        try:
            self._spawn("etcd", self._etcd_args())
            self._wait_http(f"http://127.0.0.1:{self.ports['etcd']}/health", deadline, "etcd")
            self._spawn("kube-apiserver", self._apiserver_args(pki))
            self._wait_readyz(deadline)
            self._spawn("kube-controller-manager", self._controller_manager_args(pki))
            self._spawn("kube-scheduler", self._scheduler_args())
            self._spawn("kwok", self._kwok_args())
            self._create_node()
            self._wait_node_ready(deadline)
            self._wait_default_service_account(deadline)
            self._write_env_file()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process this cluster started and remove its state (logs are kept)."""
        pids = self.running_pids()
        for pid in pids.values():
            _signal_group(pid, signal.SIGTERM)
        end = time.monotonic() + 15
        while time.monotonic() < end and any(_alive(p) for p in pids.values()):
            time.sleep(0.1)
        for pid in pids.values():
            if _alive(pid):
                _signal_group(pid, signal.SIGKILL)
        for pid in pids.values():
            _reap(pid)
        self._reset_state()

    def running_pids(self) -> dict[str, int]:
        pid_dir = self.state_dir / "pids"
        if not pid_dir.is_dir():
            return {}
        pids = {}
        for pid_file in pid_dir.glob("*.pid"):
            pid = int(pid_file.read_text().strip() or 0)
            if pid and _alive(pid):
                pids[pid_file.stem] = pid
        return pids

    def status(self) -> dict[str, object]:
        """What runs and whether the API server answers /readyz."""
        ports_file = self.state_dir / "ports.json"
        if ports_file.exists():
            self.ports = json.loads(ports_file.read_text())
        pids = self.running_pids()
        ready = False
        if pids and self.ports:
            try:
                ready = self._get("/readyz", timeout=3) == "ok"
            except OSError:
                ready = False
        return {"components": {c: pids.get(c) for c in COMPONENTS}, "apiserverReady": ready}

    # --- kubectl helpers ------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run the matching kubectl against this cluster (admin unless `kubeconfig` is given)."""
        cmd = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig or self.kubeconfig)]
        proc = subprocess.run(
            [*cmd, *args], input=input, capture_output=True, text=True, timeout=timeout,
            env=self.env,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig that authenticates as ServiceAccount `namespace/name` (bound token)."""
        exists = self.kubectl("-n", namespace, "get", "serviceaccount", name, check=False)
        if exists.returncode != 0:
            self.kubectl("-n", namespace, "create", "serviceaccount", name)
        token = self.kubectl("-n", namespace, "create", "token", name, "--duration=24h").stdout
        path = self.state_dir / f"sa-{namespace}-{name}.kubeconfig"
        write_kubeconfig(path, self.server, self.state_dir / "pki" / "ca.crt",
                         {"token": token.strip()})  # fmt: skip
        return path

    # --- internals ------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        for child in ("pki", "etcd-data", "pids", "cert-dir"):
            shutil.rmtree(self.state_dir / child, ignore_errors=True)
        for pattern in ("*.kubeconfig", "kubeconfig", "env", "ports.json"):
            for path in self.state_dir.glob(pattern):
                path.unlink()
        (self.state_dir / "pids").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.state_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - child owns it
        proc = subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.state_dir,
        )  # fmt: skip
        log.close()
        (self.state_dir / "pids" / f"{name}.pid").write_text(str(proc.pid))

    def _etcd_args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        return [
            f"--data-dir={self.state_dir / 'etcd-data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--listen-metrics-urls=",
            # Test data is disposable; skipping fsync makes every write much cheaper.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_args(self, pki: Path) -> list[str]:
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--cert-dir={self.state_dir / 'cert-dir'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,"
            "LimitRanger,ResourceQuota,DefaultStorageClass,MutatingAdmissionWebhook,"
            "ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--v=1",
        ]

    def _controller_manager_args(self, pki: Path) -> list[str]:
        kubeconfig = self.state_dir / "controller-manager.kubeconfig"
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['controller-manager']}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            # One tenant and a few hundred objects at most: don't let client-side throttling
            # (default 20 qps) dominate how fast Deployments reach Ready in tests and benchmarks.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--v=1",
        ]

    def _scheduler_args(self) -> list[str]:
        kubeconfig = self.state_dir / "scheduler.kubeconfig"
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['scheduler']}",
            "--leader-elect=false",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ]

    def _kwok_args(self) -> list[str]:
        stages = self.kwok_stages
        if not stages.exists():
            raise ClusterError(f"KWOK stage definitions missing: {stages} (rebuild the cache)")
        return [
            f"--kubeconfig={self.state_dir / 'kwok.kubeconfig'}",
            f"--config={stages}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom",
            "--cidr=10.244.0.1/16",
            "--node-ip=10.244.0.1",
            "--server-address=127.0.0.1:" + str(self.ports["kwok"]),
            "--node-lease-duration-seconds=40",
        ]

    def _create_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            # Room for benchmarks of a thousand ModelServices (100m CPU each) and more.
            "status": {
                "allocatable": {"cpu": "1000", "memory": "4Ti", "pods": "5000"},
                "capacity": {"cpu": "1000", "memory": "4Ti", "pods": "5000"},
            },
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(node))

    def _write_env_file(self) -> None:
        (self.state_dir / "env").write_text(
            f'export KUBECONFIG={self.kubeconfig}\nexport PATH="{self.bin_dir}:$PATH"\n'
        )

    def _ssl_context(self) -> ssl.SSLContext:
        pki = self.state_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def _get(self, path: str, timeout: float = 5) -> str:
        with urllib.request.urlopen(
            self.server + path, context=self._ssl_context(), timeout=timeout
        ) as resp:
            return resp.read().decode()

    def _check_alive(self, what: str) -> None:
        for name in COMPONENTS:
            pid_file = self.state_dir / "pids" / f"{name}.pid"
            if pid_file.exists() and not _alive(int(pid_file.read_text())):
                log = self.state_dir / "logs" / f"{name}.log"
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                raise ClusterError(f"{name} exited while waiting for {what}:\n{tail}")

    def _wait(self, deadline: float, what: str, probe) -> None:  # type: ignore[no-untyped-def]
        last_error = ""
        while time.monotonic() < deadline:
            self._check_alive(what)
            try:
                if probe():
                    return
            except (OSError, ClusterError, ValueError) as exc:
                last_error = str(exc)
            time.sleep(0.2)
        raise ClusterError(f"timed out waiting for {what} (last error: {last_error[-500:]})")

    def _wait_http(self, url: str, deadline: float, what: str) -> None:
        def probe() -> bool:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200

        self._wait(deadline, what, probe)

    def _wait_readyz(self, deadline: float) -> None:
        self._wait(deadline, "kube-apiserver /readyz", lambda: self._get("/readyz") == "ok")

    def _wait_node_ready(self, deadline: float) -> None:
        def probe() -> bool:
            node = json.loads(self.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
            conditions = node.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait(deadline, f"node {NODE_NAME} Ready", probe)

    def _wait_default_service_account(self, deadline: float) -> None:
        def probe() -> bool:
            return self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0

        self._wait(deadline, "the default ServiceAccount", probe)

    def smoke_deployment(self, timeout: float = 60) -> None:
        """Prove the cluster runs a Deployment to Ready, then remove it."""
        ns = "cluster-smoke"
        self.kubectl("create", "namespace", ns)
        try:
            self.kubectl(
                "-n", ns, "create", "deployment", "smoke", "--image=registry.invalid/smoke:1",
                "--replicas=1",
            )  # fmt: skip
            self.kubectl(
                "-n", ns, "rollout", "status", "deployment/smoke", f"--timeout={int(timeout)}s",
                timeout=timeout + 10,
            )  # fmt: skip
        finally:
            self.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); look at its state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def temporary_cluster() -> LocalCluster:
    """A cluster in a fresh temporary state directory (for tests)."""
    state = Path(tempfile.mkdtemp(prefix="aiops-cluster-"))
    bin_dir, stages = build_binaries()
    return LocalCluster(state_dir=state, bin_dir=bin_dir, kwok_stages=stages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".cluster")
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()

    if args.command == "down":
        cluster = LocalCluster(state_dir=state_dir, bin_dir=Path("/nonexistent"))
        stopped = sorted(cluster.running_pids())
        cluster.stop()
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    if args.command == "status":
        cluster = LocalCluster(state_dir=state_dir, bin_dir=Path("/nonexistent"))
        print(json.dumps(cluster.status(), indent=2))
        return 0 if cluster.status()["apiserverReady"] else 1

    started = time.monotonic()
    bin_dir, stages = build_binaries()
    cluster = LocalCluster(state_dir=state_dir, bin_dir=bin_dir, kwok_stages=stages)
    try:
        cluster.start()
        cluster.smoke_deployment()
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"logs: {state_dir / 'logs'}", file=sys.stderr)
        return 1
    print(f"control plane ready in {time.monotonic() - started:.1f}s at {cluster.server}")
    print(f"  kubeconfig: {cluster.kubeconfig}")
    print(f"  use it:     . {state_dir / 'env'} && kubectl get nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A real, local Kubernetes control plane, with a real node or only a KWOK one.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as local processes on free
ports; KWOK plays the kubelet of one fake node (pods become Running and Ready, nothing runs), for
scale. With `--node real` (the default of `make cluster-up`) a real node joins: containerd, runc,
kubelet, kube-proxy and CoreDNS in their own namespaces (aiops_harness.realnode), the API
server listens on the host end of the node's veth, and the KWOK node is tainted so that real
workloads land on the real node. Certificates are generated at start. Standard library only, so
it runs before any virtualenv exists.

    python3 -m aiops_harness.localcluster up|down|status [--state-dir .cluster] [--node real|kwok]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
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

from aiops_harness import realnode

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "control-plane-build.sh"
NODE_BUILD_SCRIPT = REPO_ROOT / "hack" / "node-build.sh"
IMAGES_SCRIPT = REPO_ROOT / "hack" / "images.sh"
NODE_NAME = "kwok-node-0"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# Inside 198.18.0.0/15 (the benchmarking range); real nodes take their links and pod ranges
# from 198.18.0.0/16 (aiops_harness.realnode), KWOK's fake pod IPs from 198.18.128.0/17.
SERVICE_CIDR = "198.19.0.0/16"
KUBERNETES_SERVICE_IP = "198.19.0.1"
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}


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


PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000


def listen_ports() -> range:
    """Where free_port looks: below the kernel's ephemeral range, whose ports any outgoing
    connection may take as its own between our probe and the component's bind (a port the
    kernel picked for a probe is one of those: seen as "address already in use" in CI)."""
    try:
        ephemeral_low = int(PORT_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    return range(LOWEST_PORT, max(ephemeral_low, LOWEST_PORT + 1000))


def free_port() -> int:
    """A loopback TCP port nothing listens on, outside the ephemeral range."""
    ports = listen_ports()
    for _ in range(200):
        port = random.randrange(ports.start, ports.stop)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise ClusterError(f"no free port in {ports.start}-{ports.stop - 1} after 200 tries")


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def generate_pki(pki: Path, addresses: tuple[str, ...] = ()) -> None:
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
        "subjectAltName="
        + "".join(f"IP:{ip}," for ip in ("127.0.0.1", *addresses, KUBERNETES_SERVICE_IP))
        + "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        "DNS:kubernetes.default.svc.cluster.local\n"
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
        # The real node's identities: kubelet (Node authorizer), kube-proxy, CoreDNS, and the
        # API server's own client to the kubelet (logs, exec, port-forward).
        "kubelet": (f"/O=system:nodes/CN=system:node:{realnode.NODE_NAME}", "client.ext"),
        "kube-proxy": ("/CN=system:kube-proxy", "client.ext"),
        "coredns": ("/CN=system:coredns", "client.ext"),
        "apiserver-kubelet-client": ("/O=system:masters/CN=kube-apiserver-kubelet", "client.ext"),
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


@dataclass(frozen=True)
class NodeBuild:
    """What a real node runs: its binaries, the CNI plugins and the pause image's archive."""

    bin_dir: Path
    cni_bin: Path
    pause_archive: Path
    pause_ref: str


@dataclass
class LocalCluster:
    """A control plane whose state (PIDs, logs, certs, etcd data) lives in `state_dir`."""

    state_dir: Path
    bin_dir: Path
    kwok_stages: Path = Path("/nonexistent")
    ports: dict[str, int] = field(default_factory=dict)
    node_build: NodeBuild | None = None  # None: KWOK only
    address: str = "127.0.0.1"  # where the API server listens (a real node's host end)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.ports['apiserver']}"

    @property
    def real_node(self) -> realnode.RealNode | None:
        """The real node, when this cluster has one (also from another process's state)."""
        info = self.state_dir / "node.json"
        if self.node_build is None and not info.exists():
            return None
        saved = json.loads(info.read_text()) if info.exists() else {}
        build = self.node_build
        return realnode.RealNode(
            node_dir=self.state_dir / "node",
            log_dir=self.state_dir / "logs",
            bin_dir=build.bin_dir if build else Path(saved.get("bin_dir", "/nonexistent")),
            cni_bin=build.cni_bin if build else Path("/nonexistent"),
            net=realnode.NodeNetwork(int(saved.get("index", 0))),
            archives={"pause": build.pause_archive} if build else {},
            pause_ref=build.pause_ref if build else "",
        )

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
        node = self._spawn_node() if self.node_build is not None else None
        pki = self.state_dir / "pki"
        generate_pki(pki, () if node is None else (node.net.host_ip,))
        self.ports = {
            name: free_port()
            for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler")
        }
        self.ports.update(kwok=free_port(), kwok_metrics=free_port())
        (self.state_dir / "ports.json").write_text(json.dumps(self.ports))
        write_kubeconfig(self.kubeconfig, self.server, pki / "ca.crt", _cert_user(pki, "admin"))
        for name in ("controller-manager", "scheduler", "kwok", "kubelet", "kube-proxy", "coredns"):
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
            if node is not None:
                self._start_real_node(node, pki, deadline)
            self._wait_default_service_account(deadline)
            self._write_env_file()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process this cluster started and remove its state (logs are kept)."""
        stop_processes(self.running_pids(), grace_s=15)
        node = self.real_node
        if node is not None:
            node.stop()
        self._reset_state()

    def running_pids(self) -> dict[str, int]:
        return live_pids(self.state_dir / "pids")

    def status(self) -> dict[str, object]:
        """What runs, where the API server is, whether it answers, and the nodes."""
        ports_file = self.state_dir / "ports.json"
        if ports_file.exists():
            self.ports = json.loads(ports_file.read_text())
        node_info = self.state_dir / "node.json"
        if node_info.exists():
            self.address = json.loads(node_info.read_text())["host_ip"]
        pids = self.running_pids()
        components = [*COMPONENTS, *(["node"] if node_info.exists() else [])]
        ready = False
        if pids and self.ports:
            try:
                ready = self._get("/readyz", timeout=3) == "ok"
            except OSError:
                ready = False
        return {
            "components": {c: pids.get(c) for c in components},
            "apiserverReady": ready,
            "server": self.server if self.ports else None,
            "kubeconfig": str(self.kubeconfig) if self.kubeconfig.exists() else None,
            "nodes": self._node_summary() if ready else [],
        }

    def _node_summary(self) -> list[dict[str, object]]:
        nodes = json.loads(self._get("/api/v1/nodes", timeout=5))["items"]
        return [
            {
                "name": n["metadata"]["name"],
                "real": "kwok.x-k8s.io/node" not in n["metadata"].get("annotations", {}),
                "ready": any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", [])
                ),
            }
            for n in nodes
        ]

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

    def apply_crd(self, path: Path, timeout_s: float = 60) -> None:
        """Apply the CRDs of `path` (server-side: some are too large for the last-applied
        annotation) and wait until the API server serves each. Polls: `kubectl wait` fails at
        once while a new CRD's status has no conditions yet."""
        applied = self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path),
                               "-o", "name").stdout.split()  # fmt: skip
        jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
        deadline = time.monotonic() + timeout_s
        for crd in applied:
            while self.kubectl("get", crd, "-o", f"jsonpath={jsonpath}",
                               check=False).stdout.strip() != "True":  # fmt: skip
                if time.monotonic() > deadline:
                    raise ClusterError(f"{crd} not Established within {timeout_s:.0f}s")
                time.sleep(0.3)

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

    def _spawn_node(self) -> realnode.RealNode:
        """Check the machine, pick the node's addresses, start its namespaces and veth."""
        build = self.node_build
        assert build is not None
        missing = realnode.missing_prerequisites(
            build.bin_dir, build.cni_bin, {"pause": build.pause_archive}
        )
        if missing:
            raise ClusterError(
                "the real node cannot start; missing: " + "; ".join(missing)
                + " (make cluster-up CLUSTER_NODE=kwok runs without one)"
            )  # fmt: skip
        net = realnode.allocate_network()
        (self.state_dir / "node.json").write_text(
            json.dumps(
                {
                    "index": net.index,
                    "host_ip": net.host_ip,
                    "node_ip": net.node_ip,
                    "bin_dir": str(build.bin_dir),
                }
            )
        )
        self.address = net.host_ip
        node = self.real_node
        assert node is not None
        pid = node.spawn()
        (self.state_dir / "pids" / "node.pid").write_text(str(pid))
        return node

    def _start_real_node(self, node: realnode.RealNode, pki: Path, deadline: float) -> None:
        """Taint the KWOK node, let the real one start, wait until it runs a pod."""
        patch = json.dumps({"spec": {"taints": [KWOK_TAINT]}})
        self.kubectl("patch", "node", NODE_NAME, "--type", "merge", "-p", patch)
        self.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": realnode.COREDNS_RBAC}))  # fmt: skip
        node.configure(pki, {n: self.state_dir / f"{n}.kubeconfig"
                             for n in ("kubelet", "kube-proxy", "coredns")})  # fmt: skip
        node.wait_started(max(deadline - time.monotonic(), 30))

        def ready() -> bool:
            if not node.alive():
                raise ClusterError(f"the real node exited; see {self.state_dir / 'logs'}")
            got = self.kubectl("get", "node", realnode.NODE_NAME, "-o", "json", check=False)
            if got.returncode != 0:
                return False
            conditions = json.loads(got.stdout).get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait(deadline + 60, f"node {realnode.NODE_NAME} Ready", ready)

    def import_images(self, archives: list[Path]) -> None:
        """Import OCI archives into the real node's containerd (as `make images` does)."""
        node = self.real_node
        if node is None or not node.alive():
            raise ClusterError("this cluster has no running real node to import images into")
        for archive in archives:
            proc = subprocess.run(
                node.ctr("images", "import", str(archive)),
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            if proc.returncode != 0:
                raise ClusterError(f"importing {archive} failed: {proc.stderr.strip()}")

    def _reset_state(self) -> None:
        for child in ("pki", "etcd-data", "pids", "cert-dir", "node"):
            shutil.rmtree(self.state_dir / child, ignore_errors=True)
        for pattern in ("*.kubeconfig", "kubeconfig", "env", "ports.json", "node.json"):
            for path in self.state_dir.glob(pattern):
                path.unlink()
        (self.state_dir / "pids").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, args: list[str]) -> None:
        spawn(self.state_dir, name, [str(self.bin_dir / name), *args])

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
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            f"--secure-port={self.ports['apiserver']}",
            f"--cert-dir={self.state_dir / 'cert-dir'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,"
            "LimitRanger,ResourceQuota,DefaultStorageClass,MutatingAdmissionWebhook,"
            "ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,NodeRestriction",
            "--allow-privileged=true",
            # In-cluster clients (a pod's kubernetes.default.svc) need the endpoint of a real
            # node's host end; on loopback (KWOK only) there is no pod to reach it.
            f"--endpoint-reconciler-type={'none' if self.address == '127.0.0.1' else 'lease'}",
            # kubectl logs/exec/port-forward: dial the kubelet at its node IP, not its name.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
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
            "--cidr=198.18.128.0/17",
            "--node-ip=198.18.128.1",
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
            if pid_file.exists() and not realnode.pid_alive(int(pid_file.read_text())):
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
        """Prove the cluster runs a Deployment to Ready on each node, then remove it."""
        ns = "cluster-smoke"
        self.kubectl("create", "namespace", ns)
        try:
            self.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(_smoke_kwok()))
            if self.real_node is not None and self.node_build is not None:
                self.kubectl("-n", ns, "apply", "-f", "-",
                             input=json.dumps(_smoke_real(self.node_build.pause_ref)))  # fmt: skip
            for name in ("smoke", "smoke-real") if self.node_build else ("smoke",):
                self.kubectl(
                    "-n", ns, "rollout", "status", f"deployment/{name}",
                    f"--timeout={int(timeout)}s", timeout=timeout + 10,
                )  # fmt: skip
        finally:
            self.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _smoke_deployment(name: str, image: str, pod_spec: dict[str, object]) -> dict[str, object]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "c", "image": image, **pod_spec.pop("c", {})}],
                    **pod_spec,
                },
            },
        },
    }


def _smoke_kwok() -> dict[str, object]:
    return _smoke_deployment("smoke", "registry.invalid/smoke:1", {
        "nodeSelector": {"type": "kwok"}, "tolerations": [{**KWOK_TAINT, "operator": "Equal"}],
    })  # fmt: skip


def _smoke_real(pause_ref: str) -> dict[str, object]:
    return _smoke_deployment("smoke-real", pause_ref, {
        "nodeSelector": {"aiops-quality.io/node": "real"},
        "c": {"imagePullPolicy": "Never"},
    })  # fmt: skip


# --- the processes a state directory's owner started (the cluster's, the GitOps stack's) -------


def spawn(state_dir: Path, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
    """Start `args` in a session of its own (so that stopping it reaches its children), with
    output to state_dir/logs/<name>.log and its PID in state_dir/pids/<name>.pid."""
    log = open(state_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=state_dir, env=env,
    )  # fmt: skip
    log.close()
    (state_dir / "pids" / f"{name}.pid").write_text(str(proc.pid))


def live_pids(pid_dir: Path) -> dict[str, int]:
    """The processes named by pid_dir/*.pid that still run, by name."""
    pids = {}
    for pid_file in pid_dir.glob("*.pid") if pid_dir.is_dir() else []:
        pid = int(pid_file.read_text().strip() or 0)
        if pid and realnode.pid_alive(pid):
            pids[pid_file.stem] = pid
    return pids


def stop_processes(pids: dict[str, int], grace_s: float) -> None:
    """SIGTERM each process group, SIGKILL what still runs after `grace_s`; only these PIDs."""
    for pid in pids.values():
        _signal_group(pid, signal.SIGTERM)
    end = time.monotonic() + grace_s
    while time.monotonic() < end and any(realnode.pid_alive(p) for p in pids.values()):
        time.sleep(0.1)
    for pid in pids.values():
        if realnode.pid_alive(pid):
            _signal_group(pid, signal.SIGKILL)
    for pid in pids.values():
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _script_lines(script: Path, *args: str) -> dict[str, str]:
    proc = subprocess.run(["bash", str(script), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"{script.name} {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def build_node() -> NodeBuild:
    """Build (or reuse from the cache) the real node's binaries and its pause image."""
    node = _script_lines(NODE_BUILD_SCRIPT)
    pause = _script_lines(IMAGES_SCRIPT, "pause")
    return NodeBuild(
        bin_dir=Path(node["bin"]),
        cni_bin=Path(node["cni_bin"]),
        pause_archive=Path(pause["pause_archive"]),
        pause_ref=pause["pause"],
    )


def temporary_cluster(real_node: bool = False) -> LocalCluster:
    """A cluster in a fresh temporary state directory (for tests)."""
    state = Path(tempfile.mkdtemp(prefix="aiops-cluster-"))
    bin_dir, stages = build_binaries()
    return LocalCluster(
        state_dir=state, bin_dir=bin_dir, kwok_stages=stages,
        node_build=build_node() if real_node else None,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "import"))
    parser.add_argument("archives", nargs="*", type=Path, help="import: OCI archives")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".cluster")
    parser.add_argument(
        "--node",
        choices=("real", "kwok"),
        default=os.environ.get("CLUSTER_NODE") or "real",
        help="real: a real node beside the KWOK one (default); kwok: the KWOK node only",
    )
    parser.add_argument("--json", action="store_true", help="status as JSON")
    args = parser.parse_intermixed_args(argv)
    state_dir = args.state_dir.resolve()

    if args.command == "down":
        cluster = LocalCluster(state_dir=state_dir, bin_dir=Path("/nonexistent"))
        stopped = sorted(cluster.running_pids())
        cluster.stop()
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    if args.command == "import":
        cluster = LocalCluster(state_dir=state_dir, bin_dir=Path("/nonexistent"))
        if cluster.real_node is None or not cluster.real_node.alive():
            print(f"no real node runs from {state_dir}: nothing imported (make cluster-up, then "
                  "make images again)", file=sys.stderr)  # fmt: skip
            return 0
        try:
            cluster.import_images(args.archives)
        except ClusterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"imported into {realnode.NODE_NAME}: {', '.join(a.name for a in args.archives)}",
              file=sys.stderr)  # fmt: skip
        return 0
    if args.command == "status":
        cluster = LocalCluster(state_dir=state_dir, bin_dir=Path("/nonexistent"))
        status = cluster.status()
        print(json.dumps(status, indent=2) if args.json else describe(status, state_dir))
        return 0 if status["apiserverReady"] else 1

    started = time.monotonic()
    try:
        bin_dir, stages = build_binaries()
        cluster = LocalCluster(
            state_dir=state_dir, bin_dir=bin_dir, kwok_stages=stages,
            node_build=build_node() if args.node == "real" else None,
        )  # fmt: skip
        cluster.start()
        cluster.smoke_deployment()
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"logs: {state_dir / 'logs'}", file=sys.stderr)
        return 1
    print(f"cluster ready in {time.monotonic() - started:.1f}s")
    print(describe(cluster.status(), state_dir))
    return 0


def describe(status: dict[str, object], state_dir: Path) -> str:
    """`make cluster-status` for a person: the API, the kubeconfig, the nodes, the processes."""
    if not status["apiserverReady"]:
        running = {k: v for k, v in status["components"].items() if v}  # type: ignore[attr-defined]
        return "no cluster answers" + (f" (still running: {', '.join(running)})" if running else "")
    lines = [
        f"API server  {status['server']}",
        f"kubeconfig  {status['kubeconfig']}",
        f"use it      . {state_dir / 'env'} && kubectl get nodes",
        "nodes",
    ]
    for node in status["nodes"]:  # type: ignore[attr-defined]
        kind = "real (containerd + runc, kubelet)" if node["real"] else "KWOK (no containers run)"
        lines.append(f"  {node['name']:<14} {'Ready' if node['ready'] else 'NotReady':<9} {kind}")
    pids = ", ".join(f"{k}={v}" for k, v in status["components"].items() if v)  # type: ignore[attr-defined]
    lines.append(f"processes   {pids}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""A real Kubernetes node beside the local control plane, kept off the host as a kind node is.

containerd + runc, kubelet, the CNI ptp plugin, kube-proxy (nftables) and CoreDNS run inside
their own network, mount and PID namespaces (`unshare`): a veth pair is the node's only link to
the host, where the API server listens on the host end. The node's writes to /run, /var/lib and
/var/log land on tmpfs or in the cluster's state directory; the host sysctls kubelet sets
(`vm.overcommit_memory`, `kernel.panic`, `kernel.panic_on_oops`) are shadowed by files; nft
tables exist only in the node's network namespace. When the namespace's first process exits,
the kernel ends every process in it, the veth and its route go with the namespace, and what
remains on the host (the pods' cgroup directories) is removed by `stop()`.

Addresses come from 198.18.0.0/15, the benchmarking range, which never collides with a real
network: node i links over 198.18.0.{4i}/30, its pods get 198.18.{64+i}.0/24, and Services
198.19.0.0/16 (see localcluster.SERVICE_CIDR). Nothing is masqueraded: pods reach only the
host's end of the link (the API server) and each other.

Used by aiops_harness.localcluster; `python3 hack/aiops_harness/realnode.py sandbox DIR` is the
namespace's first process. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "aiops-node-0"
RUNC = "/usr/sbin/runc"
NODE_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr", "kubelet", "kube-proxy", "coredns")
CNI_PLUGINS = ("ptp", "host-local", "loopback")
# What kubelet writes at start (setupKernelTunables) and the values it wants; the sandbox
# shadows them with files so the host keeps its own.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
}
# Every cgroup v1 hierarchy here; pods live below CGROUP_ROOT in each (kubelet cgroupRoot).
CGROUP_FS = Path("/sys/fs/cgroup")
DNS_PORT = 53
# Inside the node's mount namespace (on its own tmpfs): short socket paths, whatever the state
# directory's length (a Unix socket path has at most 107 bytes).
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
KUBELET_ROOT = "/var/lib/kubelet"


class NodeError(RuntimeError):
    """The real node cannot start or is not healthy."""


@dataclass(frozen=True)
class NodeNetwork:
    """The addresses of real node number `index` (one per running local cluster)."""

    index: int

    @property
    def host_if(self) -> str:
        return f"aiops{self.index}h"

    @property
    def host_ip(self) -> str:
        return f"198.18.0.{4 * self.index + 1}"

    @property
    def node_ip(self) -> str:
        return f"198.18.0.{4 * self.index + 2}"

    @property
    def pod_cidr(self) -> str:
        return f"198.18.{64 + self.index}.0/24"

    @property
    def cgroup_root(self) -> str:
        return f"/aiops-node-{self.index}"


def allocate_network() -> NodeNetwork:
    """The first node network whose host interface and address are not in use."""
    links = _run("ip", "-o", "link", "show").stdout
    addresses = _run("ip", "-o", "-4", "addr", "show").stdout
    for index in range(60):
        net = NodeNetwork(index)
        link_free = f" {net.host_if}@" not in links and f" {net.host_if}:" not in links
        if link_free and f"inet {net.host_ip}/" not in addresses:
            return net
    raise NodeError("every real-node network in 198.18.0.0/24 is in use")


def missing_prerequisites(bin_dir: Path, cni_bin: Path, archives: dict[str, Path]) -> list[str]:
    """What this machine lacks to run a real node (empty when it can)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the node needs namespaces, veth and mounts)")
    for command in ("unshare", "ip", "nft", "mount"):
        if shutil.which(command) is None:
            missing.append(f"the {command} command")
    if not os.access(RUNC, os.X_OK):
        missing.append(f"{RUNC} (Debian package runc)")
    missing += [f"{bin_dir / b}" for b in NODE_BINARIES if not (bin_dir / b).is_file()]
    missing += [f"{cni_bin / p}" for p in CNI_PLUGINS if not (cni_bin / p).is_file()]
    missing += [f"image archive {name}: {path}" for name, path in archives.items()
                if not path.is_file()]  # fmt: skip
    if "overlay" not in Path("/proc/filesystems").read_text():
        missing.append("the overlay filesystem (containerd's snapshotter)")
    if not missing and _run("unshare", "--net", "--mount", "--pid", "--fork", "true",
                            check=False).returncode != 0:  # fmt: skip
        missing.append("unshare of network, mount and PID namespaces")
    return missing


def _run(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60, **kwargs)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# --- configuration files (pure: values in, text out) ---------------------------------------


def containerd_config(node_dir: Path, cni_bin: Path, pause_ref: str) -> str:
    """containerd's config: state under the node directory, runc, CNI, the local pause image."""
    return f"""version = 3
root = "{node_dir / "containerd" / "root"}"
state = "/run/containerd"

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{pause_ref}"

[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: never ask for a lower oom_score_adj than our own.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{node_dir / "cni" / "net.d"}"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "{RUNC}"
      SystemdCgroup = false
"""


def cni_config(net: NodeNetwork, node_dir: Path) -> dict[str, object]:
    """ptp: one veth per pod and a /32 route, so all pod traffic is routed (kube-proxy's DNAT
    sees it without br_netfilter); no masquerading."""
    return {
        "cniVersion": "1.0.0",
        "name": "aiops",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": False,
                "mtu": 1500,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": net.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node_dir / "cni" / "ipam"),
                },
            }
        ],
    }


def kubelet_config(net: NodeNetwork, node_dir: Path, ca: Path) -> dict[str, object]:
    """KubeletConfiguration for this host: cgroup v1 (hybrid), no QoS hierarchy, no host
    iptables chains, no oom_score_adj below ours."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        # Pods' cgroups go below cgroupRoot (kubepods/...), which stop() removes again.
        "cgroupsPerQOS": True,
        "cgroupRoot": net.cgroup_root,
        "enforceNodeAllocatable": [],
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "address": net.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "oomScoreAdj": 0,
        "makeIPTablesUtilChains": False,
        "protectKernelDefaults": False,
        "clusterDomain": "cluster.local",
        "clusterDNS": [net.node_ip],
        "resolvConf": str(node_dir / "resolv.conf"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "failSwapOn": False,
        "rotateCertificates": False,
        "serializeImagePulls": False,
        "maxPods": 110,
        # A changed ConfigMap reaches pods at the next pod sync: 10 s here (kubelet's 1 min
        # default keeps tests of threshold changes waiting).
        "syncFrequency": "10s",
    }


def kube_proxy_config(net: NodeNetwork, kubeconfig: Path) -> dict[str, object]:
    """kube-proxy in nftables mode; conntrack limits left alone (they are host-wide)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": net.node_ip,
        "clusterCIDR": net.pod_cidr,
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        "nodePortAddresses": [f"{net.node_ip}/32"],
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
    }


def corefile(net: NodeNetwork, kubeconfig: Path) -> str:
    """Cluster DNS on the node's address: Services and pods of cluster.local, nothing else."""
    return f""".:{DNS_PORT} {{
    bind {net.node_ip}
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    loop
    loadbalance
}}
"""


# CoreDNS reads Services, EndpointSlices, Pods and Namespaces as user system:coredns.
COREDNS_RBAC = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "aiops-local:coredns"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["endpoints", "services", "pods", "namespaces"],
                "verbs": ["list", "watch"],
            },
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["list", "watch"],
            },
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "aiops-local:coredns"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "aiops-local:coredns",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}
        ],
    },
]


# --- the host side -------------------------------------------------------------------------


@dataclass
class RealNode:
    """One real node: its namespaces' first process, its veth and its configuration."""

    node_dir: Path
    log_dir: Path
    bin_dir: Path
    cni_bin: Path
    net: NodeNetwork
    archives: dict[str, Path]
    pause_ref: str

    @property
    def pid_file(self) -> Path:
        return self.node_dir / "sandbox.pid"

    def spawn(self) -> int:
        """Start the namespaces' first process and wire its veth; returns the unshare PID."""
        for sub in ("var-log", "sysctl", "cni/net.d", "cni/ipam", "containerd"):
            (self.node_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.node_dir / "sandbox.json").write_text(json.dumps(self._sandbox_plan()))
        log = open(self.log_dir / "node-sandbox.log", "ab")  # noqa: SIM115 - child owns it
        proc = subprocess.Popen(
            ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
             "--propagation", "private", "--kill-child",
             sys.executable, str(Path(__file__).resolve()), "sandbox", str(self.node_dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.pid_file.write_text(str(proc.pid))
        child = self._first_child(proc)
        (self.node_dir / "sandbox.child").write_text(str(child))
        net = self.net
        _run("ip", "link", "add", net.host_if, "type", "veth", "peer", "name", "eth0",
             "netns", str(child))  # fmt: skip
        _run("ip", "addr", "add", f"{net.host_ip}/30", "dev", net.host_if)
        _run("ip", "link", "set", net.host_if, "up")
        _run("ip", "route", "add", net.pod_cidr, "via", net.node_ip, "dev", net.host_if)
        self._wait_file("wired", 30, proc)
        return proc.pid

    def configure(self, pki: Path, kubeconfigs: dict[str, Path]) -> None:
        """Write the node's configuration and let the sandbox start its daemons."""
        node = self.node_dir
        (node / "cni" / "net.d" / "10-aiops.conflist").write_text(
            json.dumps(cni_config(self.net, node), indent=2)
        )
        (node / "containerd.toml").write_text(containerd_config(node, self.cni_bin, self.pause_ref))
        (node / "kubelet.json").write_text(
            json.dumps(kubelet_config(self.net, node, pki / "ca.crt"), indent=2)
        )
        (node / "kube-proxy.json").write_text(
            json.dumps(kube_proxy_config(self.net, kubeconfigs["kube-proxy"]), indent=2)
        )
        (node / "Corefile").write_text(corefile(self.net, kubeconfigs["coredns"]))
        # Pods resolve through the cluster DNS only (kubelet adds it); nothing upstream.
        (node / "resolv.conf").write_text("")
        plan = self._sandbox_plan()
        plan["kubelet_kubeconfig"] = str(kubeconfigs["kubelet"])
        (node / "sandbox.json").write_text(json.dumps(plan))
        (node / "go").write_text("")

    def wait_started(self, timeout: float) -> None:
        """Wait until the sandbox started every daemon and imported the images."""
        self._wait_file("started", timeout, None)

    def inside(self, *args: str) -> list[str]:
        """A command line that runs `args` in the node's mount namespace (its /run, /var/lib)."""
        child = int((self.node_dir / "sandbox.child").read_text())
        return ["nsenter", "--target", str(child), "--mount", "--", *args]

    def ctr(self, *args: str) -> list[str]:
        """A command line for the node's containerd (namespace k8s.io)."""
        return self.inside(str(self.bin_dir / "ctr"), "--address", CONTAINERD_SOCKET,
                           "-n", "k8s.io", *args)  # fmt: skip

    def alive(self) -> bool:
        pid = self._pid()
        return pid is not None and pid_alive(pid)

    def stop(self) -> None:
        """End the namespaces (and with them every node process), then remove cgroup dirs."""
        pid = self._pid()
        if pid is not None and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            end = time.monotonic() + 20
            while time.monotonic() < end and pid_alive(pid):
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        remove_cgroups(self.net.cgroup_root)
        self.pid_file.unlink(missing_ok=True)

    # --- internals --------------------------------------------------------------------------

    def _sandbox_plan(self) -> dict[str, object]:
        return {
            "node_ip": self.net.node_ip,
            "host_ip": self.net.host_ip,
            "cgroup_root": self.net.cgroup_root,
            "bin_dir": str(self.bin_dir),
            "log_dir": str(self.log_dir),
            "archives": {name: str(path) for name, path in self.archives.items()},
            "node_name": NODE_NAME,
        }

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _first_child(self, proc: subprocess.Popen[bytes]) -> int:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise NodeError(f"unshare exited ({proc.returncode}): {self._log_tail()}")
            with contextlib.suppress(OSError):
                pids = children.read_text().split()
                if pids:
                    return int(pids[0])
            time.sleep(0.02)
        raise NodeError("the node's namespaces did not start")

    def _wait_file(self, name: str, timeout: float, proc: subprocess.Popen[bytes] | None) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if (self.node_dir / name).exists():
                return
            if not self.alive() or (proc is not None and proc.poll() is not None):
                raise NodeError(f"the node's sandbox exited: {self._log_tail()}")
            time.sleep(0.1)
        raise NodeError(f"the node's sandbox did not reach '{name}' in {timeout:.0f}s: "
                        f"{self._log_tail()}")  # fmt: skip

    def _log_tail(self) -> str:
        log = self.log_dir / "node-sandbox.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"


def remove_cgroups(cgroup_root: str) -> None:
    """Remove the (empty, once the node's processes are gone) pod cgroups below cgroup_root."""
    for hierarchy in CGROUP_FS.iterdir():
        top = hierarchy / cgroup_root.lstrip("/")
        if not top.is_dir():
            continue
        for directory in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie child still answers kill(0): its state says)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- inside the namespaces ------------------------------------------------------------------


def _sh(*args: str) -> None:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise NodeError(f"{' '.join(args)}: {proc.stderr.strip()}")


def _shield_host(node_dir: Path) -> None:
    """Keep the node's writes off the host: tmpfs over /run and /var/lib, its own /var/log,
    files over the sysctls kubelet sets, the cgroup root it puts pods under."""
    _sh("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run")
    _sh("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/var/lib")
    _sh("mount", "--bind", str(node_dir / "var-log"), "/var/log")
    for name, value in KUBELET_SYSCTLS.items():
        shadow = node_dir / "sysctl" / name.replace("/", ".")
        shadow.write_text(value + "\n")
        _sh("mount", "--bind", str(shadow), f"/proc/sys/{name}")


def _wire(plan: dict[str, object], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not Path("/sys/class/net/eth0").exists():
        if time.monotonic() > end:
            raise NodeError("the host never moved the veth into the node")
        time.sleep(0.05)
    _sh("ip", "link", "set", "lo", "up")
    _sh("ip", "addr", "add", f"{plan['node_ip']}/30", "dev", "eth0")
    _sh("ip", "link", "set", "eth0", "up")
    _sh("ip", "route", "add", "default", "via", str(plan["host_ip"]))
    # Per network namespace: routes between the pods' veths and eth0.
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")


class _Daemons:
    """The node's daemons, started in order, each logging to the cluster's log directory."""

    def __init__(self, plan: dict[str, object], node_dir: Path) -> None:
        self.plan = plan
        self.node_dir = node_dir
        self.bin_dir = Path(str(plan["bin_dir"]))
        self.log_dir = Path(str(plan["log_dir"]))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        env = {**os.environ, "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        log = open(self.log_dir / f"node-{name}.log", "ab")  # noqa: SIM115 - child owns it
        self.procs[name] = subprocess.Popen(
            [str(self.bin_dir / name), *args], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, cwd=self.node_dir,
        )  # fmt: skip
        log.close()

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise NodeError(f"{name} exited ({proc.returncode}); see node-{name}.log")


def _wait_socket(path: Path, daemons: _Daemons, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        daemons.check()
        if time.monotonic() > end:
            raise NodeError(f"{path} did not appear")
        time.sleep(0.05)


def sandbox_main(node_dir: Path) -> int:
    """The first process of the node's namespaces: shield the host, wire, start the daemons."""
    plan = json.loads((node_dir / "sandbox.json").read_text())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _shield_host(node_dir)
    _wire(plan)
    (node_dir / "wired").write_text("")
    while not (node_dir / "go").exists():
        time.sleep(0.05)
    plan = json.loads((node_dir / "sandbox.json").read_text())
    for hierarchy in CGROUP_FS.iterdir():
        if hierarchy.name != "unified":
            (hierarchy / str(plan["cgroup_root"]).lstrip("/")).mkdir(exist_ok=True)
    daemons = _Daemons(plan, node_dir)
    sock = Path(CONTAINERD_SOCKET)
    daemons.start("containerd", "--config", str(node_dir / "containerd.toml"))
    _wait_socket(sock, daemons)
    for name, archive in plan["archives"].items():
        proc = subprocess.run(
            [str(daemons.bin_dir / "ctr"), "--address", str(sock), "-n", "k8s.io", "images",
             "import", "--no-unpack", str(archive)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if proc.returncode != 0:
            raise NodeError(f"importing {name} ({archive}) failed: {proc.stderr.strip()}")
    daemons.start(
        "kubelet",
        "--config", str(node_dir / "kubelet.json"),
        "--kubeconfig", str(plan["kubelet_kubeconfig"]),
        "--root-dir", KUBELET_ROOT,
        "--cert-dir", f"{KUBELET_ROOT}/pki",
        "--hostname-override", str(plan["node_name"]),
        "--node-ip", str(plan["node_ip"]),
        "--node-labels", "aiops-quality.io/node=real",
        "--v=1",
    )  # fmt: skip
    daemons.start("kube-proxy", "--config", str(node_dir / "kube-proxy.json"), "--v=1")
    daemons.start("coredns", "-conf", str(node_dir / "Corefile"))
    (node_dir / "started").write_text("")
    while True:
        daemons.check()
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass  # reap orphans re-parented to us (we are PID 1 here)
        time.sleep(0.5)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "sandbox":
        try:
            sys.exit(sandbox_main(Path(sys.argv[2])))
        except NodeError as exc:
            print(f"node sandbox: {exc}", file=sys.stderr, flush=True)
            sys.exit(1)
    print("usage: realnode.py sandbox NODE_DIR (started by localcluster.py)", file=sys.stderr)
    sys.exit(2)

"""The real node's binaries are pinned like the control plane's: wrapper modules agree with
hack/versions.sh, CoreDNS links only the cluster-DNS plugins, and the built binaries say so."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK = REPO_ROOT / "hack"

CONTAINERD_TOOLS = {
    f"github.com/containerd/containerd/v2/cmd/{c}"
    for c in ("containerd", "containerd-shim-runc-v2", "ctr")
}
CNI_TOOLS = {
    f"github.com/containernetworking/plugins/plugins/{p}"
    for p in ("main/bridge", "ipam/host-local", "main/loopback", "meta/portmap", "main/ptp")
}
NODE_TOOLS_IN_K8S = {"k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy"}
# The plugins a cluster DNS needs, in CoreDNS's execution order (core/dnsserver/zdirectives.go).
COREDNS_DIRECTIVES = [
    "reload",
    "bind",
    "ready",
    "health",
    "prometheus",
    "errors",
    "log",
    "loadbalance",
    "cache",
    "hosts",
    "kubernetes",
    "loop",
    "forward",
]


def shell_versions() -> dict[str, str]:
    text = (HACK / "versions.sh").read_text()
    return dict(re.findall(r"^([A-Z0-9_]+_VERSION)=(\S+)$", text, flags=re.MULTILINE))


def go_mod(module_dir: str) -> str:
    return (HACK / module_dir / "go.mod").read_text()


def required_version(module_dir: str, module: str) -> str:
    match = re.search(
        rf"^\s*(?:require\s+)?{re.escape(module)} v(\S+)", go_mod(module_dir), re.MULTILINE
    )
    assert match, f"{module} is not required in hack/{module_dir}/go.mod"
    return match.group(1)


def tools(module_dir: str) -> set[str]:
    text = go_mod(module_dir)
    block = re.search(r"^tool \(\n(.*?)^\)", text, re.MULTILINE | re.DOTALL)
    single = re.findall(r"^tool ([^\s(]\S*)$", text, re.MULTILINE)
    return set(single) | (set(block.group(1).split()) if block else set())


def sourced(expression: str) -> str:
    return subprocess.run(
        ["bash", "-c", f'. "$0"; echo "{expression}"', str(HACK / "versions.sh")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "AIOPS_CACHE_DIR": "/cache"},
    ).stdout.strip()


def test_node_wrapper_modules_pin_the_versions_named_in_versions_sh():
    versions = shell_versions()
    assert (
        required_version("containerd", "github.com/containerd/containerd/v2")
        == versions["CONTAINERD_VERSION"]
    )
    assert (
        required_version("cni", "github.com/containernetworking/plugins")
        == versions["CNI_PLUGINS_VERSION"]
    )
    assert required_version("coredns", "github.com/coredns/coredns") == versions["COREDNS_VERSION"]
    # kubelet and kube-proxy come from the control plane's own pin.
    assert required_version("k8s", "k8s.io/kubernetes") == versions["K8S_VERSION"]


def test_node_wrapper_modules_declare_what_node_build_sh_builds_and_commit_their_hashes():
    assert tools("containerd") == CONTAINERD_TOOLS
    assert tools("cni") == CNI_TOOLS
    assert tools("k8s") >= NODE_TOOLS_IN_K8S
    for module_dir in ("containerd", "cni", "coredns", "k8s"):
        go_sum = (HACK / module_dir / "go.sum").read_text()
        assert re.search(r" h1:\S+=$", go_sum, re.MULTILINE), f"hack/{module_dir}/go.sum"
    # No replace directives: the node binaries get exactly the dependencies upstream releases.
    for module_dir in ("containerd", "cni", "coredns"):
        assert not re.search(r"^replace", go_mod(module_dir), re.MULTILINE), module_dir


def test_node_cache_key_names_every_node_version_and_the_control_plane_key_is_unchanged():
    versions = shell_versions()
    assert sourced("$NODE_KEY") == (
        f"k8s-v{versions['K8S_VERSION']}_containerd-v{versions['CONTAINERD_VERSION']}"
        f"_cni-v{versions['CNI_PLUGINS_VERSION']}_coredns-v{versions['COREDNS_VERSION']}"
    )
    assert sourced("$CONTROL_PLANE_KEY") == (
        f"k8s-v{versions['K8S_VERSION']}_etcd-v{versions['ETCD_VERSION']}"
        f"_kwok-v{versions['KWOK_VERSION']}"
    )


def test_coredns_links_exactly_the_plugins_its_directives_name():
    main_go = (HACK / "coredns" / "main.go").read_text()
    directives = re.findall(r'^\s+"([a-z0-9_]+)",$', main_go, re.MULTILINE)
    assert directives == COREDNS_DIRECTIVES
    plugins = set(re.findall(r'_ "github.com/coredns/coredns/plugin/(\w+)"', main_go))
    # The prometheus directive is the plugin package "metrics"; every other has its own name.
    assert plugins == {"metrics" if d == "prometheus" else d for d in directives}
    assert "core/plugin" not in main_go, "core/plugin would link every plugin and its cloud SDK"


@pytest.mark.integration
@pytest.mark.slow
def test_built_node_binaries_report_their_pinned_versions():
    # Takes ~7 min on a cold cache; reuses $AIOPS_CACHE_DIR/node/<NODE_KEY> afterwards.
    proc = subprocess.run(
        [str(HACK / "node-build.sh")], capture_output=True, text=True, timeout=3600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert [line.split("=", 1)[0] for line in lines[-2:]] == ["bin", "cni_bin"]
    bin_dir, cni_bin = (Path(line.split("=", 1)[1]) for line in lines[-2:])
    versions = shell_versions()

    def output(path: Path, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [str(path), *args], capture_output=True, text=True, timeout=30, env=env
        )
        return done.stdout + done.stderr

    containerd = f"v{versions['CONTAINERD_VERSION']}"
    assert containerd in output(bin_dir / "containerd", "--version")
    assert containerd in output(bin_dir / "ctr", "--version")
    assert f"Version:  {containerd}" in output(bin_dir / "containerd-shim-runc-v2", "-v")
    for kube in ("kubelet", "kube-proxy"):
        assert (
            output(bin_dir / kube, "--version").strip() == f"Kubernetes v{versions['K8S_VERSION']}"
        )
    assert f"CoreDNS-{versions['COREDNS_VERSION']}" in output(bin_dir / "coredns", "-version")
    listed = set(output(bin_dir / "coredns", "-plugins").split())
    assert set(COREDNS_DIRECTIVES) <= listed
    # Linked in by forward, kubernetes and cache themselves; usable only if listed as directives.
    assert listed - set(COREDNS_DIRECTIVES) <= {"debug", "dnstap", "metadata", "transfer"}
    for plugin in ("bridge", "host-local", "loopback", "portmap", "ptp"):
        about = output(cni_bin / plugin, env={"PATH": os.environ["PATH"]})
        assert f"CNI {plugin} plugin v{versions['CNI_PLUGINS_VERSION']}" in about

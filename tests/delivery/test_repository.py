"""The repository's own promises: pinned versions agree, `make help` lists every target."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shell_versions() -> dict[str, str]:
    text = (REPO_ROOT / "hack" / "versions.sh").read_text()
    return dict(re.findall(r"^([A-Z0-9_]+_VERSION)=(\S+)$", text, flags=re.MULTILINE))


def required_version(module_dir: str, module: str) -> str:
    go_mod = (REPO_ROOT / "hack" / module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} v(\S+)", go_mod, re.MULTILINE)
    assert match, f"{module} is not required in hack/{module_dir}/go.mod"
    return match.group(1)


def test_go_wrapper_modules_pin_the_versions_named_in_versions_sh():
    versions = shell_versions()
    assert required_version("k8s", "k8s.io/kubernetes") == versions["K8S_VERSION"]
    assert required_version("etcd", "go.etcd.io/etcd/server/v3") == versions["ETCD_VERSION"]
    assert required_version("kwok", "sigs.k8s.io/kwok") == versions["KWOK_VERSION"]


def test_every_kubernetes_staging_module_is_replaced_by_its_published_version():
    go_mod = (REPO_ROOT / "hack" / "k8s" / "go.mod").read_text()
    minor = shell_versions()["K8S_VERSION"].split(".", 1)[1]
    replaced = re.findall(r"^\s*(k8s\.io/\S+) => (k8s\.io/\S+) (v\S+)$", go_mod, re.MULTILINE)
    assert len(replaced) >= 30
    for source, target, version in replaced:
        assert source == target
        assert version == f"v0.{minor}", f"{source} pinned to {version}"


def test_make_help_lists_every_target_with_a_description():
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-zA-Z0-9_-]+):", makefile, re.MULTILINE))
    documented = set(re.findall(r"^([a-zA-Z0-9_-]+):.*## ", makefile, re.MULTILINE))
    help_text = subprocess.run(
        ["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert targets == documented, f"targets without a ## description: {targets - documented}"
    for target in documented:
        assert re.search(rf"^\s+{re.escape(target)}\s", help_text, re.MULTILINE), target


def test_readme_starts_with_the_two_quick_start_commands():
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert [line.split("#")[0].strip() for line in block] == ["make demo", "make test"]


def test_ci_runs_exactly_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.MULTILINE)

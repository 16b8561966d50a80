"""The images install hash-locked requirements (make lock): every package pinned with hashes,
and the lock satisfies what each pyproject.toml asks for."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCKS = {
    "runtime": REPO_ROOT / "runtime" / "requirements.lock",
    "operator": REPO_ROOT / "operator" / "requirements.lock",
}
BUILD_LOCK = REPO_ROOT / "hack" / "build-requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s\\]+)")


def pins(lock: Path) -> dict[str, tuple[str, int]]:
    """{name: (version, number of hashes)} of a lock file."""
    found: dict[str, tuple[str, int]] = {}
    current = ""
    for line in lock.read_text().splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match[1])
            found[current] = (match[3], 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
        elif line.strip() and not line.lstrip().startswith(("#", "--hash")):
            raise AssertionError(f"{lock.name}: not a pinned, hashed requirement: {line!r}")
    return found


@pytest.mark.parametrize("lock", [*LOCKS.values(), BUILD_LOCK], ids=lambda p: p.parent.name)
def test_every_locked_package_is_pinned_with_hashes(lock: Path) -> None:
    locked = pins(lock)
    assert locked
    unhashed = [name for name, (_, hashes) in locked.items() if hashes == 0]
    assert not unhashed, f"{lock.name}: no --hash for {unhashed}"


@pytest.mark.parametrize("package", sorted(LOCKS))
def test_the_lock_satisfies_the_pyproject(package: str) -> None:
    project = tomllib.loads((REPO_ROOT / package / "pyproject.toml").read_text())["project"]
    locked = pins(LOCKS[package])
    for text in project["dependencies"]:
        wanted = Requirement(text)
        name = canonicalize_name(wanted.name)
        assert name in locked, f"{package}: {wanted.name} is not in the lock (run make lock)"
        assert wanted.specifier.contains(locked[name][0], prereleases=True), (
            f"{package}: locked {name}=={locked[name][0]} does not satisfy {wanted}"
        )
    build = tomllib.loads((REPO_ROOT / package / "pyproject.toml").read_text())["build-system"]
    for text in build["requires"]:
        wanted = Requirement(text)
        version = pins(BUILD_LOCK)[canonicalize_name(wanted.name)][0]
        assert wanted.specifier.contains(version), f"build lock: {wanted} vs {version}"


@pytest.mark.parametrize("dockerfile", ["Dockerfile.runtime", "Dockerfile.operator"])
def test_the_images_install_with_require_hashes(dockerfile: str) -> None:
    text = (REPO_ROOT / dockerfile).read_text()
    assert "--require-hashes" in text
    assert "--no-deps --no-build-isolation ./" in text

"""hack/e2e-kind.sh (make e2e-kind) needs a container engine; without one it refuses clearly,
before it builds or creates anything."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.delivery.delivery_helpers import REPO_ROOT, run

SCRIPT = REPO_ROOT / "hack" / "e2e-kind.sh"


def _path_with(tmp_path: Path, *commands: str) -> str:
    """A PATH holding only the named commands (symlinks to the real ones)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for command in commands:
        real = shutil.which(command)
        assert real, command
        (bin_dir / command).symlink_to(real)
    return str(bin_dir)


def test_refuses_when_no_container_engine_is_installed(tmp_path: Path) -> None:
    path = _path_with(tmp_path, "dirname")
    proc = run("/bin/bash", SCRIPT, env={"PATH": path, "HOME": str(tmp_path)}, check=False)
    assert proc.returncode == 2
    assert "no container engine found (neither docker nor podman is on PATH)" in proc.stderr
    assert "needs Docker or Podman" in proc.stderr
    assert proc.stdout == ""


def test_refuses_when_the_engine_does_not_answer(tmp_path: Path) -> None:
    path = _path_with(tmp_path, "dirname")
    # A docker CLI whose daemon is unreachable, as on a machine with the client only.
    stub = Path(path) / "docker"
    stub.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    stub.chmod(0o755)
    proc = run("/bin/bash", SCRIPT, env={"PATH": path, "HOME": str(tmp_path)}, check=False)
    assert proc.returncode == 2
    assert "docker is installed but not running or not reachable" in proc.stderr
    assert proc.stdout == ""

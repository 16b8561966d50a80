"""Helpers shared by every test area. `free_port` is the harness's own (one definition for
tests, benchmarks and the local cluster)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiops_harness.localcluster import free_port as free_port  # re-exported for the tests

REPO_ROOT = Path(__file__).resolve().parent.parent

# The one not-ready reason of /readyz that can still turn into ready; any other is final (the
# runtime loads its artifacts once and does not retry).
LOADING = "loading"


def _readyz(url: str) -> tuple[int, dict[str, Any]] | None:
    """(status, body) of GET /readyz, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {}
    except (OSError, ValueError):
        return None


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return "\nlog tail:\n" + log.read_text(errors="replace")[-3000:]


def wait_runtime_ready(
    url: str,
    timeout_s: float = 90,
    process: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
) -> dict[str, Any]:
    """Wait for the runtime's /readyz to answer 200 and return its body.

    Fails at once, with the runtime's own reason, when it reports a final load failure (a digest
    mismatch, say) or its process exits; on timeout, says what /readyz last answered.
    """
    deadline = time.monotonic() + timeout_s
    last = "nothing answered"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the runtime at {url} exited ({process.returncode}){_tail(log)}")
        answer = _readyz(url)
        if answer is not None:
            status, body = answer
            if status == 200:
                return body
            reason, message = body.get("reason", f"HTTP {status}"), body.get("message", "")
            last = f"{reason}: {message}"
            if reason != LOADING:
                raise AssertionError(
                    f"the runtime at {url} will not become ready: {last}{_tail(log)}"
                )
        time.sleep(0.1)
    raise AssertionError(
        f"the runtime at {url} was not ready within {timeout_s:.0f}s; last /readyz: {last}"
        f"{_tail(log)}"
    )


def pinned_tool(name: str) -> Path:
    """A delivery tool (helm, promtool, hadolint, gitlab-ci-local) built or reused by
    hack/tools-build.sh from its pin."""
    proc = subprocess.run(
        [str(REPO_ROOT / "hack" / "tools-build.sh"), name],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, f"hack/tools-build.sh {name} failed:\n{proc.stderr[-3000:]}"
    path = Path(proc.stdout.strip().splitlines()[-1]) / name
    assert path.exists(), f"hack/tools-build.sh did not provide {name}"
    return path


T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)

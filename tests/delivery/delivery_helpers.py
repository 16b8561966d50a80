"""Helpers shared by the delivery tests (commands, YAML, paths)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHARTS = REPO_ROOT / "charts"
OPERATOR_CHART = CHARTS / "aiops-operator"
MONITORING_CHART = CHARTS / "aiops-monitoring"
# The umbrella's dependencies cannot be fetched here; our own templates render without them.
NO_DEPENDENCIES = ["--set", "loki.enabled=false,promtail.enabled=false,grafana.enabled=false"]


def run(
    *args: str | Path, input: str | None = None, check: bool = True, timeout: float = 120, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; on failure the message carries stdout and stderr."""
    proc = subprocess.run(
        [str(a) for a in args], input=input, capture_output=True, text=True, timeout=timeout, **kw
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc


def load_all(text: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a multi-document string."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[Any], timeout_s: float = 10) -> None:
    """Terminate a process we started, then kill it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)


def apply_crd(cluster: Any, path: Path, timeout_s: float = 60) -> None:
    """Apply a CRD (server-side: some are too large for the last-applied annotation) and wait
    until the API server serves it. Polls: `kubectl wait` fails while status has no conditions."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cluster.kubectl("get", "crd", name, "-o", f"jsonpath={jsonpath}", check=False)
        if got.stdout.strip() == "True":
            return
        time.sleep(0.5)
    pytest.fail(f"CRD {name} not Established within {timeout_s}s")

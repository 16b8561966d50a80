"""The real `aiops-runtime serve` process over real HTTP, as the runbook and Kubernetes use it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.runtime.runtime_helpers import RUNBOOK_FEATURES

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("aiops-runtime")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str

    def stop(self) -> list[dict[str, object]]:
        """SIGTERM the server, check it shut down gracefully; its stdout as parsed JSON lines."""
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=20)
        lines = [json.loads(line) for line in out.splitlines() if line]
        # uvicorn re-raises the signal after a graceful shutdown, so the exit status is SIGTERM's.
        assert self.process.returncode in (0, -signal.SIGTERM)
        assert any(line["message"] == "Application shutdown complete." for line in lines)
        return lines


def serve(model_dir: Path, **env: str) -> Served:
    port = free_port()
    process = subprocess.Popen(
        [
            str(CLI),
            "serve",
            "--model-dir",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "DRIFT_ENABLED": "false", **env},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"aiops-runtime exited: {process.communicate()[0]}")
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return Served(process, url)
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise TimeoutError("aiops-runtime did not start listening")


def wait_ready(url: str, timeout_s: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = httpx.get(f"{url}/readyz", timeout=2)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


@pytest.fixture
def served(example_model_dir: Path) -> Iterator[Served]:
    server = serve(example_model_dir)
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.communicate()


def test_runbook_sample_request_is_served(served: Served) -> None:
    assert wait_ready(served.url).status_code == 200
    response = httpx.post(
        f"{served.url}/predict",
        json={"features": RUNBOOK_FEATURES},
        headers={"X-Request-ID": "runbook-1"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["predictions"] == ["benign"]
    assert len(body["probabilities"][0]) == 2
    # The runbook's `curl …/metrics | grep model_predictions_total`.
    metrics = httpx.get(f"{served.url}/metrics").text
    assert [
        line for line in metrics.splitlines() if line.startswith("model_predictions_total")
    ] == ["model_predictions_total 1.0"]
    lines = served.stop()
    assert all({"time", "level", "message", "logger", "model"} <= set(line) for line in lines)
    assert any(line["message"] == "Model ready" for line in lines)


def test_tampered_model_dir_stays_not_ready_but_alive(
    example_model_dir: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "tampered"
    shutil.copytree(example_model_dir, model_dir)
    model = model_dir / "model.skops"
    model.write_bytes(model.read_bytes() + b"\0")
    server = serve(model_dir)
    try:
        time.sleep(1.0)
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"] == "digest_mismatch"
    finally:
        lines = server.stop()
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert len(errors) == 1
    assert "sha256" in str(errors[0]["message"])
    assert errors[0]["reason"] == "digest_mismatch"

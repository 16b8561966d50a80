"""The real `aiops-runtime serve` process over real HTTP, as the runbook and Kubernetes use it."""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import requests

from aiops_runtime.settings import RuntimeSettings
from tests.helpers import free_port
from tests.runtime.runtime_helpers import RUNBOOK_FEATURES

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("aiops-runtime")


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


# Oversized bodies: the runtime must answer 413 in a way every common client can read, whether it
# keeps the connection alive (requests, httpx) or sends `Connection: close` (urllib), which makes
# uvicorn close the socket right after the answer: unread body bytes would make the kernel reset it.
MAX_BODY_BYTES = RuntimeSettings.model_fields["max_body_bytes"].default
BODY_DRAIN_BYTES = RuntimeSettings.model_fields["body_drain_bytes"].default
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def oversized_body() -> bytes:
    """100,001 runbook rows: about 24 MB, over MAX_BODY_BYTES but within the drain budget."""
    body = json.dumps({"instances": [RUNBOOK_FEATURES] * 100_001}).encode()
    assert MAX_BODY_BYTES < len(body) <= MAX_BODY_BYTES + BODY_DRAIN_BYTES
    return body


def assert_body_too_large(status: int, body: bytes) -> None:
    assert status == 413
    assert json.loads(body)["error"]["reason"] == "body_too_large"


def test_oversized_body_is_413_to_urllib(served: Served, oversized_body: bytes) -> None:
    """urllib sends `Connection: close`: it used to get a reset or a broken pipe instead."""
    assert wait_ready(served.url).status_code == 200
    request = urllib.request.Request(
        f"{served.url}/predict", data=oversized_body, headers=JSON_HEADERS
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)
    assert_body_too_large(answer.value.code, answer.value.read())


def test_oversized_body_is_413_to_requests(served: Served, oversized_body: bytes) -> None:
    assert wait_ready(served.url).status_code == 200
    response = requests.post(
        f"{served.url}/predict", data=oversized_body, headers=JSON_HEADERS, timeout=30
    )
    assert_body_too_large(response.status_code, response.content)


def test_oversized_chunked_body_is_413_with_connection_close(
    served: Served, oversized_body: bytes
) -> None:
    """No Content-Length: the runtime finds out while reading, past MAX_BODY_BYTES."""
    assert wait_ready(served.url).status_code == 200
    url = urlsplit(served.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    chunks = (oversized_body[i : i + 65536] for i in range(0, len(oversized_body), 65536))
    try:
        connection.request(
            "POST",
            "/predict",
            body=chunks,
            headers={**JSON_HEADERS, "Connection": "close"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert_body_too_large(response.status, response.read())
    finally:
        connection.close()


def send_head(url: str, content_length: int, *extra: str) -> socket.socket:
    """A raw connection that sent a /predict request's headers (and no body yet)."""
    address = urlsplit(url)
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    head = [
        "POST /predict HTTP/1.1",
        f"Host: {address.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {content_length}",
        *extra,
    ]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    return sock


def status_line(sock: socket.socket) -> bytes:
    received = b""
    while b"\r\n" not in received:
        data = sock.recv(4096)
        if not data:
            break
        received += data
    return received.split(b"\r\n", 1)[0]


@pytest.mark.parametrize(
    ("content_length", "drains"),
    [
        pytest.param(24_200_257, True, id="within-drain-budget"),
        pytest.param(MAX_BODY_BYTES + BODY_DRAIN_BYTES + 1, False, id="over-drain-budget"),
    ],
)
def test_slow_sender_gets_413_within_drain_timeout(
    example_model_dir: Path, content_length: int, drains: bool
) -> None:
    """A body trickled far slower than the drain allows is answered after BODY_DRAIN_TIMEOUT_S
    (mid-body); a declared length beyond MAX_BODY_BYTES + BODY_DRAIN_BYTES is answered at once."""
    drain_timeout_s, margin_s = 0.5, 3.0
    server = serve(example_model_dir, BODY_DRAIN_TIMEOUT_S=str(drain_timeout_s))
    try:
        assert wait_ready(server.url).status_code == 200
        start = time.monotonic()
        sent = 0
        with send_head(server.url, content_length) as sock:
            # 64 KiB every 50 ms (~1.3 MB/s): the whole body would take 18 s or more.
            while not select.select([sock], [], [], 0)[0]:
                assert time.monotonic() - start < drain_timeout_s + margin_s, "no answer"
                sock.sendall(b" " * 65536)
                sent += 65536
                time.sleep(0.05)
            answered_s = time.monotonic() - start
            assert status_line(sock).startswith(b"HTTP/1.1 413 ")
    finally:
        server.stop()
    assert sent < content_length
    if drains:
        assert drain_timeout_s <= answered_s < drain_timeout_s + margin_s
    else:
        assert answered_s < drain_timeout_s


def test_oversized_body_behind_expect_100_continue_is_413_at_once(served: Served) -> None:
    """The client waits for our answer before sending: no 100 Continue, no draining."""
    assert wait_ready(served.url).status_code == 200
    start = time.monotonic()
    with send_head(served.url, 24_200_257, "Expect: 100-continue") as sock:
        assert status_line(sock).startswith(b"HTTP/1.1 413 ")
    # Well under the default BODY_DRAIN_TIMEOUT_S (5 s): nothing was waited for.
    assert time.monotonic() - start < 2.5

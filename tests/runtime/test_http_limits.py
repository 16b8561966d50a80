"""The runtime process cuts clients that hold a connection without sending a request, and caps
the connections and requests it serves at once (http_limits.py, uvicorn's limit_concurrency)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.runtime.runtime_helpers import RUNBOOK_FEATURES
from tests.runtime.test_cli_serve import Served, serve, wait_ready

pytestmark = pytest.mark.integration

READ_TIMEOUT_S = 1.0


def connect(url: str) -> socket.socket:
    address = urlsplit(url)
    return socket.create_connection((address.hostname, address.port), timeout=10)


def closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes `sock` (reads and discards whatever it sends)."""
    start = time.monotonic()
    while sock.recv(4096):
        pass
    return time.monotonic() - start


@pytest.fixture(scope="module")
def server(example_model_dir: Path) -> Iterator[Served]:
    served = serve(
        example_model_dir, REQUEST_READ_TIMEOUT_S=str(READ_TIMEOUT_S), MAX_CONCURRENCY="4"
    )
    assert wait_ready(served.url).status_code == 200
    yield served
    served.stop()


HALF_HEADERS = b"POST /predict HTTP/1.1\r\nHost: x\r\n"
SOME_BODY = HALF_HEADERS + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{["


@pytest.mark.parametrize("sent", [b"", HALF_HEADERS, SOME_BODY], ids=["nothing", "half", "body"])
def test_a_client_that_does_not_finish_its_request_is_cut(server: Served, sent: bytes) -> None:
    with connect(server.url) as sock:
        sock.sendall(sent)
        took = closed_after(sock)
    assert READ_TIMEOUT_S * 0.8 <= took < READ_TIMEOUT_S + 2


def test_a_slow_but_timely_request_and_its_keep_alive_successor_are_served(server: Served) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        first = client.post("/predict", json={"features": RUNBOOK_FEATURES})
        time.sleep(READ_TIMEOUT_S * 0.6)  # idle, then a second request on the same connection
        second = client.post("/predict", json={"features": RUNBOOK_FEATURES})
    assert first.status_code == second.status_code == 200


def test_past_the_concurrency_limit_new_requests_get_503(server: Served) -> None:
    held = [connect(server.url) for _ in range(4)]  # four connections, each holding a slot
    try:
        busy = httpx.post(f"{server.url}/predict", json={"features": RUNBOOK_FEATURES}, timeout=5)
    finally:
        for sock in held:
            sock.close()
    assert busy.status_code == 503
    time.sleep(0.2)
    ok = httpx.post(f"{server.url}/predict", json={"features": RUNBOOK_FEATURES}, timeout=5)
    assert ok.status_code == 200

"""`aiops-operator run` ends at once, naming the port, when a port it listens on is taken."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from aiops_operator.cli import liveness_port_taken, main
from tests.helpers import free_port


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_metrics_port_ends_the_operator_naming_the_port(
    taken_port: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIOPS_OPERATOR_METRICS_PORT", str(taken_port))
    monkeypatch.setenv("AIOPS_OPERATOR_LOG_FORMAT", "plain")
    with caplog.at_level(logging.ERROR, logger="aiops_operator"):
        assert main(["run", "--liveness", ""]) == 2
    assert f"metrics port {taken_port} cannot listen" in caplog.text
    assert "AIOPS_OPERATOR_METRICS_PORT" in caplog.text


def test_a_taken_liveness_port_ends_the_operator_naming_the_endpoint(
    taken_port: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIOPS_OPERATOR_METRICS_PORT", "0")
    monkeypatch.setenv("AIOPS_OPERATOR_LOG_FORMAT", "plain")
    endpoint = f"http://127.0.0.1:{taken_port}/healthz"
    with caplog.at_level(logging.ERROR, logger="aiops_operator"):
        assert main(["run", "--liveness", endpoint]) == 2
    assert f"liveness endpoint {endpoint} cannot listen" in caplog.text


def test_a_free_liveness_port_is_not_reported(taken_port: int) -> None:
    assert liveness_port_taken(f"http://127.0.0.1:{free_port()}/healthz") is None
    assert liveness_port_taken("") is None
    assert liveness_port_taken(f"http://127.0.0.1:{taken_port}/healthz")

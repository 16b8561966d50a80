"""Ports for the local control plane's components: free, and outside the ephemeral range."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aiops_harness import localcluster


def test_a_free_port_is_bindable_and_below_the_ephemeral_range() -> None:
    low = int(localcluster.PORT_RANGE_FILE.read_text().split()[0])
    for _ in range(20):
        port = localcluster.free_port()
        assert localcluster.LOWEST_PORT <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_that_is_listened_on_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", localcluster.free_port()))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(localcluster, "listen_ports", lambda: range(taken, taken + 2))
        assert {localcluster.free_port() for _ in range(10)} == {taken + 1}


def test_without_the_kernels_range_the_default_ephemeral_start_is_assumed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(localcluster, "PORT_RANGE_FILE", tmp_path / "missing")
    assert localcluster.listen_ports() == range(localcluster.LOWEST_PORT, 32768)

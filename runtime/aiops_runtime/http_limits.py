"""Limits on what one client can hold in the HTTP server: a deadline to send each request.

uvicorn times out only idle keep-alive connections: a client that opens a connection and sends
its headers or body a byte at a time holds it (and its memory) for as long as it likes, and a
few hundred such clients exhaust the server. `read_timeout_protocol(seconds)` is uvicorn's
httptools protocol with one more timer: from the connection's first byte (or a keep-alive
request's first byte) the whole request must have arrived within `seconds`, else the
connection is closed. Requests already read and being answered are never cut.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class ReadTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes a connection whose request is not read within the limit."""

    read_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # until the first request is read

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._read_timer is None:  # a keep-alive connection's next request
            self._arm()

    def on_message_complete(self) -> None:
        self._disarm()  # read in full: answering it has no deadline here
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def read_timeout_protocol(seconds: float) -> type[ReadTimeoutProtocol]:
    """The protocol class for uvicorn's `http` option with this read deadline."""
    return type("ReadTimeoutProtocol", (ReadTimeoutProtocol,), {"read_timeout_s": seconds})

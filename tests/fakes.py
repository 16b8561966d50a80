"""Helpers of the drift-loop tests: small real HTTP servers standing in for GitLab's pipeline
trigger API and for a runtime's GET /drift (on 127.0.0.1, or on the host end of a real node's
link so that pods reach them)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Recorded:
    """One request the fake server received."""

    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class FakeServer:
    """What a fake server answers (status, JSON body) and every request it got."""

    status: int = 200
    body: Any = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0
    host: str = "127.0.0.1"
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def received(self) -> list[Recorded]:
        with self.lock:
            return list(self.requests)


def send_json(h: BaseHTTPRequestHandler, status: int, doc: Any) -> None:
    """Answer `status` with `doc` as a JSON body of a known length."""
    data = json.dumps(doc).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def _handler(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            with fake.lock:
                fake.requests.append(
                    Recorded(self.command, self.path, dict(self.headers.items()), form)
                )
                status, body = fake.status, fake.body
            send_json(self, status, body)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

    return Handler


@contextmanager
def fake_server(
    status: int = 200, body: Any = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[FakeServer]:
    """A threaded HTTP server on `port` (0: a free one) of `host` answering `status` and `body`
    as JSON."""
    fake = FakeServer(status=status, body=body if body is not None else {}, host=host)
    server = ThreadingHTTPServer((host, port), _handler(fake))
    fake.port = int(server.server_address[1])
    with _serving(server):
        yield fake


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[None]:
    """Serve in a thread for the duration of the block, then stop and close."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class RawServer:
    """A server whose handler writes whatever a test wants; counts the bytes it wrote."""

    base: str
    written: list[int]  # bytes written (headers and body) per request, in order

    def total_written(self) -> int:
        return sum(self.written)


@contextmanager
def raw_server(
    respond: Callable[[BaseHTTPRequestHandler], None], host: str = "127.0.0.1"
) -> Iterator[RawServer]:
    """A threaded HTTP server on a free port of `host`; `respond(handler)` writes the whole
    answer (status line, headers, body). A client that
    hangs up mid-answer ends that request quietly."""
    written: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            count = [0]
            real_write = self.wfile.write

            def counting(data: bytes) -> int:  # type: ignore[override]
                count[0] += len(data)
                return int(real_write(data) or 0)

            try:
                self.wfile.write = counting  # type: ignore[method-assign]
                respond(self)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                written.append(count[0])
                self.close_connection = True

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    with _serving(server):
        yield RawServer(base=f"http://{host}:{server.server_address[1]}", written=written)


@dataclass
class PackageRegistry:
    """A stand-in for GitLab's generic package API: PUT stores a file (with the job token),
    GET serves it, unauthenticated, as a public project's registry does."""

    base: str
    token: str
    files: dict[str, bytes] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # paths PUT without the right token
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stored(self) -> dict[str, bytes]:
        with self.lock:
            return dict(self.files)


@contextmanager
def package_registry(token: str, host: str = "127.0.0.1") -> Iterator[PackageRegistry]:
    """A threaded server on a free port of `host` (the host end of a real node's link, so that
    pods download from it)."""
    registry = PackageRegistry(base="", token=token)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("JOB-TOKEN") != registry.token:
                with registry.lock:
                    registry.refused.append(self.path)
                self._send(401, b'{"message": "401 Unauthorized"}')
                return
            with registry.lock:
                registry.files[self.path] = data
            self._send(201, b'{"message": "201 Created"}')

        def do_GET(self) -> None:
            with registry.lock:
                data = registry.files.get(self.path)
            if data is None:
                self._send(404, b'{"message": "404 Not Found"}')
            else:
                self._send(200, data, "application/octet-stream")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, 0), Handler)
    registry.base = f"http://{host}:{server.server_address[1]}"
    with _serving(server):
        yield registry

"""Artifact downloads a tenant's URI can point anywhere: bounded in size and time, hashed while
they stream, no scheme-changing redirects, credentials kept to their host, URIs redacted in
every message, and a reference checked from its .npy header and cut to a bounded sample."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import numpy as np
import pytest

from aiops_runtime.model_store import ArtifactError, load_artifacts, parse_reference, redact_uri
from aiops_runtime.settings import RuntimeSettings
from tests.fakes import fake_server, raw_server
from tests.runtime.runtime_helpers import app_client

SECRET = "s3cr3t-signature-9f2"


def settings(uri: str, sha: str = "0" * 64, **extra: object) -> RuntimeSettings:
    return RuntimeSettings(
        model_uri=uri, model_sha256=sha, drift_enabled=False, log_summary_interval_s=0,
        **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def serve_bytes(body: bytes, length: str | None = None):  # type: ignore[no-untyped-def]
    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", length or str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return respond


def test_a_declared_length_past_the_cap_is_refused_unread() -> None:
    declared = serve_bytes(b"x" * 1000, length=str(5 * 2**30))
    with raw_server(declared) as server, pytest.raises(ArtifactError) as err:
        load_artifacts(settings(f"{server.base}/model.skops", model_max_bytes=2**20))
    assert err.value.reason == "too_large"
    assert str(5 * 2**30) in err.value.message


def test_a_stream_past_the_cap_stops_at_the_cap() -> None:
    def endless(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"x" * 65536
        for _ in range(16 * 1024):  # 1 GiB
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    with raw_server(endless) as server:
        with pytest.raises(ArtifactError) as err:
            load_artifacts(settings(f"{server.base}/model.skops", model_max_bytes=2**20))
        assert server.total_written() < 32 * 2**20
    assert err.value.reason == "too_large"


def test_a_dripping_server_hits_the_one_total_deadline() -> None:
    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(10**6))
        h.end_headers()
        for _ in range(10**6):
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(0.05)

    with raw_server(drip) as server:
        started = time.monotonic()
        with pytest.raises(ArtifactError) as err:
            load_artifacts(settings(f"{server.base}/model.skops", download_timeout_s=1.0))
        took = time.monotonic() - started
    assert err.value.reason == "fetch_failed"
    assert "took longer than 1s" in err.value.message
    assert took < 3.0


def test_the_digest_is_computed_while_streaming_and_checked(example_model_dir: Path) -> None:
    body = (example_model_dir / "model.skops").read_bytes()
    with raw_server(serve_bytes(body)) as server:
        with pytest.raises(ArtifactError) as err:
            load_artifacts(settings(f"{server.base}/model.skops"))
        assert err.value.reason == "digest_mismatch"
        assert hashlib.sha256(body).hexdigest() in err.value.message
        good = settings(f"{server.base}/model.skops", sha=hashlib.sha256(body).hexdigest())
        assert load_artifacts(good).model.n_features == 30


def test_a_redirect_to_another_scheme_is_refused() -> None:
    def to_https(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", "https://127.0.0.1:1/model.skops")
        h.send_header("Content-Length", "0")
        h.end_headers()

    with raw_server(to_https) as server, pytest.raises(ArtifactError) as err:
        load_artifacts(settings(f"{server.base}/model.skops"))
    assert "redirects from http to https" in err.value.message


def test_the_authorization_header_reaches_its_host_but_no_other(example_model_dir: Path) -> None:
    body = (example_model_dir / "model.skops").read_bytes()
    with fake_server(200, {}) as elsewhere:
        other = elsewhere.base.replace("127.0.0.1", "localhost")  # another host name

        def redirect(h: BaseHTTPRequestHandler) -> None:
            seen.append(h.headers.get("Authorization"))
            h.send_response(302)
            h.send_header("Location", f"{other}/model.skops")
            h.send_header("Content-Length", "0")
            h.end_headers()

        seen: list[str | None] = []
        with raw_server(redirect) as origin, pytest.raises(ArtifactError):
            load_artifacts(
                settings(
                    f"{origin.base}/model.skops",
                    model_authorization=f"Bearer {SECRET}",
                    sha=hashlib.sha256(body).hexdigest(),
                )
            )
        (request,) = elsewhere.received()
    assert seen == [f"Bearer {SECRET}"]
    assert "Authorization" not in request.headers


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://user:pw@host.example/m.skops?X-Amz-Signature=abc#f",
         "https://host.example/m.skops [query hidden]"),
        ("http://host.example:8080/a/b.skops", "http://host.example:8080/a/b.skops"),
        ("file:///models/m.skops", "file:///models/m.skops"),
    ],
)  # fmt: skip
def test_redact_uri_drops_credentials_query_and_fragment(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown


def test_a_signed_uri_never_reaches_readyz_or_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def answers(uri: str) -> tuple[httpx.Response, httpx.Response]:
        async with app_client(settings(uri)) as client:
            return await client.get("/readyz"), await client.get("/drift")

    with fake_server(403, {"message": "denied"}) as store:
        uri = f"http://reader:{SECRET}@127.0.0.1:{store.port}/m.skops?X-Amz-Signature={SECRET}"
        with caplog.at_level(logging.INFO):
            ready, drift = asyncio.run(answers(uri))
    assert ready.status_code == 503
    assert ready.json()["reason"] == "fetch_failed"
    assert f"127.0.0.1:{store.port}/m.skops" in ready.json()["message"]
    for text in (ready.text, drift.text, caplog.text):
        assert SECRET not in text
        assert "reader" not in text


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def test_a_reference_of_the_wrong_shape_is_refused_from_its_header() -> None:
    with pytest.raises(ArtifactError, match=r"shape \(10, 3\)"):
        parse_reference(npy(np.zeros((10, 3))), n_features=30, max_rows=100)
    with pytest.raises(ArtifactError, match="not numeric"):
        parse_reference(npy(np.array([["a"] * 30] * 3)), n_features=30, max_rows=100)


def test_a_huge_reference_is_cut_to_a_fixed_sample(caplog: pytest.LogCaptureFixture) -> None:
    rows = np.random.default_rng(1).normal(size=(8000, 30))
    with caplog.at_level(logging.WARNING):
        cut = parse_reference(npy(rows), n_features=30, max_rows=2000)
    again = parse_reference(npy(rows), n_features=30, max_rows=2000)
    assert cut.shape == (2000, 30)
    np.testing.assert_array_equal(cut, again)  # the same rows every time
    assert "REFERENCE_MAX_ROWS" in caplog.text
    small = parse_reference(npy(rows[:100]), n_features=30, max_rows=2000)
    np.testing.assert_array_equal(small, rows[:100])

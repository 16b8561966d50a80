"""A runtime's GET /drift answer is the tenant's: the operator reads it bounded and strictly.

Each test is one attack from the security review, served by a real HTTP server: an answer larger
than the cap (declared, or streamed without a length), a compressed bomb, a redirect, NaN and
overflowing numbers, deep nesting, and oversized strings. Each must end as a DriftReadError of
kind `invalid` or `http`, having read at most about the cap.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from http.server import BaseHTTPRequestHandler

import pytest

from aiops_operator.drift_client import (
    DRIFT_BODY_MAX,
    DriftClient,
    DriftReadError,
    DriftReading,
    parse_snapshot,
)
from tests.fakes import raw_server

VALID = {
    "enabled": True,
    "p_value_threshold": 0.05,
    "checks": 2,
    "drift": False,
    "drift_events": 0,
    "last_p_value": 0.4,
    "last_check_time": "2026-01-01T00:00:00.000+00:00",
    "detector": "mmd",
}


def read_once(base: str, timeout_s: float = 5.0) -> DriftReading:
    async def go() -> DriftReading:
        client = DriftClient(base, 8000, timeout_s)
        try:
            return await client.read("ms", "ns")
        finally:
            await client.close()

    return asyncio.run(go())


def answer(status: int, body: bytes, **headers: str):  # type: ignore[no-untyped-def]
    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", headers.pop("length", str(len(body))))
        for k, v in headers.items():
            h.send_header(k.replace("_", "-"), v)
        h.end_headers()
        h.wfile.write(body)

    return respond


def endless(h: BaseHTTPRequestHandler) -> None:
    """400 MiB of a JSON string, chunked, with no Content-Length."""
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    chunk = b"a" * 65536
    h.wfile.write(b'1\r\n"\r\n')
    for _ in range(400 * 16):
        h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))


def test_a_valid_answer_still_reads() -> None:
    with raw_server(answer(200, json.dumps(VALID).encode())) as runtime:
        got = read_once(runtime.base)
    assert got.last_p_value == pytest.approx(0.4)
    assert got.detector == "mmd"


def test_a_streamed_answer_past_the_cap_is_refused_after_reading_about_the_cap() -> None:
    with raw_server(endless) as runtime, pytest.raises(DriftReadError) as err:
        read_once(runtime.base)
    assert err.value.kind == "invalid"
    assert "longer than" in err.value.message
    # The client hung up: the server could push only the cap plus socket buffers, not 400 MiB.
    assert runtime.total_written() < 16 * 1024 * 1024


def test_a_declared_length_past_the_cap_is_refused_before_reading() -> None:
    declared = str(400 * 1024 * 1024)
    with (
        raw_server(answer(200, b"{}", length=declared)) as runtime,
        pytest.raises(DriftReadError) as err,
    ):
        read_once(runtime.base)
    assert err.value.kind == "invalid"
    assert declared in err.value.message


def test_a_compressed_answer_is_not_inflated() -> None:
    bomb = gzip.compress(b'{"x": "' + b"a" * (64 * 1024 * 1024) + b'"}')
    assert len(bomb) < DRIFT_BODY_MAX  # small on the wire, 64 MiB inflated
    with (
        raw_server(answer(200, bomb, Content_Encoding="gzip")) as runtime,
        pytest.raises(DriftReadError) as err,
    ):
        read_once(runtime.base)
    assert err.value.kind == "invalid"
    assert "gzip" in err.value.message


def test_a_redirect_is_a_failure_and_is_not_followed() -> None:
    with raw_server(answer(200, json.dumps(VALID).encode())) as target:
        redirect = answer(307, b"", Location=f"{target.base}/drift")
        with raw_server(redirect) as runtime, pytest.raises(DriftReadError) as err:
            read_once(runtime.base)
        assert target.written == []  # nobody went there
    assert err.value.kind == "http"
    assert "307 (redirects are not followed)" in err.value.message


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"checks": NaN}', "NaN"),
        ('{"checks": Infinity}', "Infinity"),
        ('{"last_p_value": 1e999}', "overflows"),
        ("[" * 20_000 + "]" * 20_000, "nests deeper"),
        ('{"checks": 1' + "0" * 5000 + "}", "not strict JSON"),
    ],
)
def test_numbers_and_nesting_the_parser_cannot_hold_are_invalid(text: str, why: str) -> None:
    body = text.encode()
    assert len(body) <= DRIFT_BODY_MAX  # within the cap: the parser itself must refuse it
    with raw_server(answer(200, body)) as runtime, pytest.raises(DriftReadError) as err:
        read_once(runtime.base)
    assert err.value.kind == "invalid"
    assert why in err.value.message


@pytest.mark.parametrize(
    "field",
    [
        {"checks": 2**64},
        {"checks": -1},
        {"checks": True},
        {"drift": "yes"},
        {"p_value_threshold": 7},
        {"last_p_value": -0.5},
        {"detector": "x" * 10_000},
        {"last_check_time": "2026-01-01 drop table"},
        {"last_drift_time": {"nested": "object"}},
        {"drifted_features": [{"name": f"f{i}", "p_value": 0.01} for i in range(4)]},
        {"drifted_features": [{"name": "x" * 65, "p_value": 0.01}]},
        {"drifted_features": [{"name": "a\nb", "p_value": 0.01}]},
        {"drifted_features": [{"name": "mean radius", "p_value": 2}]},
        {"drifted_features": [{"name": "mean radius"}]},
        {"drifted_features": "mean radius"},
    ],
)
def test_fields_out_of_type_range_or_length_are_invalid(field: dict[str, object]) -> None:
    with pytest.raises(DriftReadError) as err:
        parse_snapshot({**VALID, **field})
    assert err.value.kind == "invalid"
    assert len(err.value.message) < 200


def test_a_disabled_reason_is_one_bounded_line() -> None:
    got = parse_snapshot({"enabled": False, "reason": "a\nb " + "x" * 10_000})
    assert "\n" not in got.reason
    assert len(got.reason) <= 400


def test_a_not_ready_reason_that_is_not_a_token_is_not_published() -> None:
    body = {"ready": False, "reason": "<script>" + "x" * 5000, "message": "digest mismatch"}
    with (
        raw_server(answer(503, json.dumps(body).encode())) as runtime,
        pytest.raises(DriftReadError) as err,
    ):
        read_once(runtime.base)
    assert err.value.kind == "notloaded"
    assert err.value.message == "the runtime has no model: not_ready: digest mismatch"

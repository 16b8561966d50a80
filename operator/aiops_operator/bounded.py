"""Bounded reads of answers from endpoints a tenant controls (a runtime, a trigger endpoint).

A runtime's Service and a trigger URL are chosen or served by whoever owns the ModelService, so
their answers are untrusted input to a process shared by every tenant. Here an answer is read
only up to a cap: a `Content-Length` above it is refused before reading, and reading stops as
soon as the cap is passed. Answers are never decompressed (the session asks for identity and
does not inflate), so a small compressed body cannot expand past the cap. JSON is parsed strictly:
no NaN or Infinity, no number that overflows to one, no nesting the parser cannot handle.
"""

from __future__ import annotations

import json
import math
from typing import Any

import aiohttp

CHUNK = 16 * 1024
HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}


class AnswerRefused(Exception):
    """An answer was not read: too large, compressed, or not strict JSON; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def session(timeout_s: float, connections: int = 100) -> aiohttp.ClientSession:
    """A client session that never inflates answers and pools at most `connections`."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        auto_decompress=False,
        connector=aiohttp.TCPConnector(limit=connections),
    )


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body of `resp`, at most `limit` bytes; raises AnswerRefused past it."""
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise AnswerRefused(f"the answer is {encoding}-encoded; only identity is read")
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise AnswerRefused(f"the answer declares {declared} bytes, more than the {limit} read")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) > limit:
            raise AnswerRefused(f"the answer is longer than the {limit} bytes read")
    return bytes(body)


def answered(status: int) -> str:
    """`answered HTTP <status>`, saying so when it is a redirect (never followed)."""
    redirect = " (redirects are not followed)" if 300 <= status < 400 else ""
    return f"answered HTTP {status}{redirect}"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} overflows a double")
    return value


def strict_json(body: bytes) -> Any:
    """Parse `body` as JSON without NaN/Infinity or overflowing numbers; raises AnswerRefused."""
    try:
        return json.loads(body, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise AnswerRefused("the answer nests deeper than the parser allows") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise AnswerRefused(f"the answer is not strict JSON ({str(exc)[:80]})") from None

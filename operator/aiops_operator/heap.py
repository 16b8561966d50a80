"""Giving the memory a burst freed back to the OS.

A burst of N ModelServices parses and builds N sets of objects and frees them again, but the
process keeps what it freed: CPython's small-object allocator can give back an arena only when
every object in it is free, and the long-lived facts the operator keeps per ModelService are
scattered through the arenas the burst filled. The image therefore runs the operator with
PYTHONMALLOC=malloc (Dockerfile.operator), so every object comes from glibc's malloc, and
`Trimmer` calls glibc's malloc_trim(0) once a burst is over, which returns every free page in
the heap to the OS. Measured in docs/benchmarks.md ("Memory after a burst").
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

log = logging.getLogger("aiops_operator")

TRIM_AFTER_S = 10.0  # quiet time after the last change before the heap is trimmed


def _libc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on a C library without it (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


MALLOC_TRIM = _libc_trim()


def trim() -> bool:
    """Collect garbage cycles, then give every free page of the heap back to the OS; whether
    the C library could (malloc_trim returns 1 when it released memory)."""
    gc.collect()
    return MALLOC_TRIM is not None and MALLOC_TRIM(0) == 1


class Trimmer:
    """Trims the heap once no change came for `after_s`: `soon()` after each change, cheap
    enough to call for every ModelService of a burst (it only moves the deadline)."""

    def __init__(self, after_s: float = TRIM_AFTER_S) -> None:
        self.after_s = after_s
        self.trims = 0
        self._due = 0.0
        self._task: asyncio.Task[None] | None = None

    def soon(self) -> None:
        """Trim `after_s` after the last call."""
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.after_s
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._wait_then_trim())

    async def _wait_then_trim(self) -> None:
        loop = asyncio.get_running_loop()
        while True:  # the deadline moves with each change: sleep until it stays put
            left = self._due - loop.time()
            if left <= 0:
                break
            await asyncio.sleep(left)
        released = await asyncio.to_thread(trim)
        self.trims += 1
        log.debug("heap trimmed after a burst (memory released: %s)", released)

    async def stop(self) -> None:
        """Cancel a trim still waiting."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

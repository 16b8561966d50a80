"""The operator under tracemalloc, for `BENCH_TRACEMALLOC=1 python bench/operator_bench.py`.

Runs `aiops-operator run` with tracemalloc on (off with BENCH_TRACEMALLOC=report); each SIGUSR1
writes a snapshot (after a garbage collection, when tracing) to <dir>/snapshot-<k>.pickle, and
what the process's memory is made of to <dir>/memory-<k>.json: bytes traced by tracemalloc and
its own overhead, glibc's heap (obtained from the OS, free in its bins, in large mmapped blocks,
arenas; from malloc_info), the RSS by kind of mapping (/proc/self/smaps), the heap's RSS after
one more malloc_trim (what the operator's own trims left resident), threads, sockets, and the
objects the garbage collector tracks, counted by type (what outlives a burst). So the
benchmark can tell live Python objects from untraced C allocations and from free memory the
allocator keeps. A debugging aid: tracemalloc's own bookkeeping inflates the RSS figures of a
traced run (the report mode has none).
Usage: python bench/operator_tracemalloc.py <snapshot dir>
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import signal
import sys
import tempfile
import tracemalloc
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

FRAMES = 8  # enough of the stack to tell Kopf's allocations from ours


def malloc_info() -> dict[str, int]:
    """glibc's account of its heap, summed over arenas ({} on another C library)."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "malloc_info"):
        return {}
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        stream = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        root = ET.parse(out.name).getroot()
    totals = {t.get("type"): int(t.get("size", 0)) for t in root.findall("total")}
    system = {s.get("type"): int(s.get("size", 0)) for s in root.findall("system")}
    free = totals.get("fast", 0) + totals.get("rest", 0)
    return {
        "arenas": len(root.findall("heap")),
        "system": system.get("current", 0),
        "free_in_bins": free,
        "mmapped_blocks": totals.get("mmap", 0),
        "in_use": system.get("current", 0) - free + totals.get("mmap", 0),
    }


def rss_by_mapping() -> dict[str, int]:
    """Resident bytes per kind of mapping: the main heap, anonymous maps (thread arenas and
    stacks, large blocks), the stack, files (libraries, extension modules)."""
    kinds: dict[str, int] = {}
    kind = "anon"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            path = fields[5] if len(fields) > 5 else ""
            kind = path if path in ("[heap]", "[stack]") else ("file" if path else "anon")
        elif fields and fields[0] == "Rss:":
            kinds[kind] = kinds.get(kind, 0) + int(fields[1]) * 1024
    return kinds


def objects_by_type() -> dict[str, int]:
    """How many objects the garbage collector tracks (containers: dicts, lists, instances...),
    by module-qualified type name."""
    counts = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
    return dict(counts)


def memory_report() -> dict[str, Any]:
    traced, _peak = tracemalloc.get_traced_memory()
    return {
        "objects": objects_by_type(),
        "traced": traced,
        "tracemalloc_overhead": tracemalloc.get_tracemalloc_memory(),
        "malloc": malloc_info(),
        "rss": rss_by_mapping(),
        "threads": len(os.listdir("/proc/self/task")),
        "sockets": sum(
            os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")
        ),
    }


def main() -> int:
    out = Path(sys.argv[1])
    taken = 0

    tracing = os.environ.get("BENCH_TRACEMALLOC", "1") != "report"

    def snapshot(_signum: int, _frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        gc.collect()
        report = memory_report()
        # What a trim now would give back: free memory the operator's own trims left resident.
        heap.trim()
        report["rss_heap_after_trim"] = rss_by_mapping().get("[heap]", 0)
        if tracing:
            target = out / f"snapshot-{taken}.pickle"
            tracemalloc.take_snapshot().dump(str(target) + ".part")
            Path(str(target) + ".part").rename(target)
        done = out / f"memory-{taken}.json"  # written last: the benchmark waits for it
        Path(str(done) + ".part").write_text(json.dumps(report))
        Path(str(done) + ".part").rename(done)

    if tracing:
        tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR1, snapshot)
    from aiops_operator import heap
    from aiops_operator.cli import main as operator_main

    return operator_main(["run"])


if __name__ == "__main__":
    raise SystemExit(main())

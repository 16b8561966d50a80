"""heap.py: trimming gives a burst's freed memory back to the OS (with the image's
PYTHONMALLOC=malloc), and the trimmer waits for the burst to be over."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from aiops_operator import heap

# A burst as the operator sees one: many parsed objects, and between them the few small
# facts it keeps, which pin CPython's arenas (and glibc's heap) when the burst is freed.
BURST = """
import json, sys
from aiops_operator import heap

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

text = json.dumps({"metadata": {"labels": {f"k{i}": "v" * 30 for i in range(10)}},
                   "spec": {"env": [{"name": f"E{i}", "value": "v" * 40} for i in range(30)]}})
burst, kept = [], []
for i in range(20000):
    burst.append(json.loads(text))
    if i % 20 == 0:
        kept.append({"uid": f"u{i}", "generation": i})
peak = rss_mib()
del burst
freed = rss_mib()
heap.trim()
print(json.dumps({"peak": peak, "freed": freed, "trimmed": rss_mib()}))
"""


def run_burst(pythonmalloc: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONMALLOC": pythonmalloc}
    out = subprocess.run(
        [sys.executable, "-c", BURST], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def test_with_the_images_allocator_a_trim_gives_the_burst_back() -> None:
    malloc = run_burst("malloc")
    assert malloc["peak"] > 200  # the burst took memory
    assert malloc["freed"] > 0.8 * malloc["peak"]  # freeing alone gives nothing back
    assert malloc["trimmed"] < 0.2 * malloc["peak"]
    # CPython's own allocator keeps nearly all of it, trim or not: why the image sets malloc.
    pymalloc = run_burst("pymalloc")
    assert pymalloc["trimmed"] > 0.5 * pymalloc["peak"]


def test_the_trimmer_trims_once_the_changes_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[float] = []
    monkeypatch.setattr(heap, "trim", lambda: trims.append(0.0) or True)

    async def story() -> None:
        trimmer = heap.Trimmer(after_s=0.2)
        for _ in range(10):  # a burst: a change every 0.05 s for 0.5 s
            trimmer.soon()
            await asyncio.sleep(0.05)
        assert trims == []
        await asyncio.sleep(0.4)
        assert len(trims) == 1
        trimmer.soon()
        await trimmer.stop()  # a trim still waiting is cancelled

    asyncio.run(story())
    assert len(trims) == 1

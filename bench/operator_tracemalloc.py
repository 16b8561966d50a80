"""The operator under tracemalloc, for `BENCH_TRACEMALLOC=1 python bench/operator_bench.py`.

Runs `aiops-operator run` with tracemalloc on; each SIGUSR1 writes a snapshot (after a garbage
collection) to <dir>/snapshot-<k>.pickle, so the benchmark can diff the 0-object baseline
against the memory left after every ModelService is deleted. A debugging aid: tracemalloc's own
bookkeeping inflates the RSS figures of such a run.
Usage: python bench/operator_tracemalloc.py <snapshot dir>
"""

from __future__ import annotations

import gc
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

FRAMES = 8  # enough of the stack to tell Kopf's allocations from ours


def main() -> int:
    out = Path(sys.argv[1])
    taken = 0

    def snapshot(_signum: int, _frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        gc.collect()
        target = out / f"snapshot-{taken}.pickle"
        tracemalloc.take_snapshot().dump(str(target) + ".part")
        Path(str(target) + ".part").rename(target)

    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR1, snapshot)
    from aiops_operator.cli import main as operator_main

    return operator_main(["run"])


if __name__ == "__main__":
    raise SystemExit(main())

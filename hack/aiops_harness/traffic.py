"""Traffic for the demo: the runbook's requests, in-distribution rows and the drift burst.

python -m aiops_harness.traffic URL sample          # the runbook's one-row request, printed
python -m aiops_harness.traffic URL normal N        # N held-out rows of the breast-cancer data
python -m aiops_harness.traffic URL out-of-range N  # the runbook's out-of-range vector, N times
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request

# The seed runbook's sample request (step 8) and its drift-provoking vector (step 10).
RUNBOOK_SAMPLE = [
    13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.04781, 0.1885, 0.05766,
    0.2699, 0.7886, 2.058, 23.56, 0.008462, 0.0146, 0.02387, 0.01486, 0.01405, 0.002377,
    15.11, 19.26, 99.7, 711.2, 0.144, 0.1773, 0.239, 0.1288, 0.2977, 0.07259,
]  # fmt: skip
RUNBOOK_OUT_OF_RANGE = [
    100, 150, 200, 300, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5,
    100, 120, 140, 160, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9,
]  # fmt: skip
BATCH = 50


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/predict",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def held_out_rows(n: int) -> list[list[float]]:
    """Held-out rows of `aiops-runtime train --seed 42` (never trained on, not the reference),
    without repeats: a window of one row repeated is a different distribution, i.e. drift."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from aiops_runtime.train import TEST_FRACTION

    data = load_breast_cancer()
    labels = np.asarray(data.target_names)[data.target]
    _, x_test, _, _ = train_test_split(
        data.data, labels, test_size=TEST_FRACTION, random_state=42, stratify=labels
    )
    return [list(map(float, row)) for row in x_test[:n]]


def send_rows(url: str, rows: list[list[float]]) -> int:
    sent = 0
    for start in range(0, len(rows), BATCH):
        sent += len(post(url, {"instances": rows[start : start + BATCH]})["predictions"])
    return sent


def get_drift(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/drift", timeout=10) as resp:
        return json.loads(resp.read())


def drift_burst(url: str, max_batches: int = 20) -> int:
    """Send `checkEvery` out-of-range rows, wait for that check, until a drift event is raised.

    Checks run in a background worker that may fold several due checks into one when requests
    outpace it; pacing the burst by check shows each check's verdict, as sustained traffic would.
    """
    start = get_drift(url)
    for batch in range(1, max_batches + 1):
        before = get_drift(url)
        send_rows(url, [RUNBOOK_OUT_OF_RANGE] * int(before["check_every"]))
        deadline = time.monotonic() + 10
        state = get_drift(url)
        while state["checks"] == before["checks"] and time.monotonic() < deadline:
            time.sleep(0.05)
            state = get_drift(url)
        print(
            f"batch {batch}: {before['check_every']} rows -> check #{state['checks']}: "
            f"p-value {state['last_p_value']:.3g}, drift flagged {state['drift']}, "
            f"drift events {state['drift_events']}"
        )
        if state["drift_events"] > start["drift_events"]:
            return 0
    print(f"no drift event after {max_batches} batches", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    url, mode = argv[0].rstrip("/"), argv[1]
    if mode == "sample":
        print(json.dumps(post(url, {"features": RUNBOOK_SAMPLE}), indent=2))
        return 0
    if mode == "drift-burst":
        return drift_burst(url)
    count = int(argv[2])
    rows = held_out_rows(count) if mode == "normal" else [RUNBOOK_OUT_OF_RANGE] * count
    print(f"sent {send_rows(url, rows)} {mode} rows in batches of {BATCH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

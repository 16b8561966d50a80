"""`make demo`, the README's main job, runs to the end and shows every step of the loop, with
the prediction answered by a container on the real node."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_shows_the_whole_loop_in_real_containers_and_tears_everything_down(tmp_path):
    state = tmp_path / "demo-cluster"
    env = {**os.environ, "AIOPS_DEMO_STATE_DIR": str(state)}
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "demo.sh")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]

    # Answered by a container: the runtime pod runs on the real node.
    assert re.search(r"^breast-cancer-\S+\s+1/1\s+Running\s+0\s.*aiops-node-0", out, re.MULTILINE)
    assert re.search(r"^aiops-operator-\S+\s+1/1\s+Running\s.*aiops-node-0", out, re.MULTILINE)
    assert re.search(r"^breast-cancer\s+True\s+1\s", out, re.MULTILINE), "READY True row"
    assert '"predictions"' in out
    assert re.search(r"^model_predictions_total [1-9]", out, re.MULTILINE)
    assert re.search(r"^breast-cancer\s+True\s+1\s+True\s", out, re.MULTILINE), "DRIFT True row"
    assert re.search(r"^breast-cancer\s+True\s+1\s+True\s+\S+\s+0\.5\s", out, re.MULTILINE)
    assert "DriftDetected" in out
    assert '"Drift detection result"' in out
    assert re.search(r"^model_drift_events_total [1-9]", out, re.MULTILINE)
    assert re.search(r'"p_value_threshold": 0\.5\b', out)
    assert "Torn down" in out

    # Nothing is left running: every PID the control plane recorded is gone.
    pid_dir = state / "pids"
    assert not pid_dir.exists() or not list(pid_dir.glob("*.pid"))

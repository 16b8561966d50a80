"""With the native engine, neither alibi-detect nor a deep-learning framework is ever imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HEAVY = ("alibi_detect", "torch", "tensorflow", "keras", "tf_keras")

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from aiops_runtime.drift import DriftMonitor
    from aiops_runtime.settings import DriftConfig

    data = load_breast_cancer().data
    monitor = DriftMonitor(data[:300], DriftConfig(detector="mmd", engine="native"))
    monitor.update_config(DriftConfig(detector="ks"))
    monitor.update_config(DriftConfig(detector="mmd", engine="native"))
    monitor.append(data[300:500])
    result = monitor.check_now()
    print(json.dumps({
        "p_value": result["p_value"],
        "loaded": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY),
    }))
    """
)


def test_native_engine_imports_no_alibi_torch_or_tensorflow() -> None:
    script = f"HEAVY = {HEAVY!r}\n{SCRIPT}"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0 < result["p_value"] <= 1  # a check really ran
    assert result["loaded"] == []

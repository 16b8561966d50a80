"""Live reload of the drift settings from a real file, polled by the real watcher thread."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from aiops_runtime.config_watch import watch_config_file
from aiops_runtime.settings import DriftConfig
from tests.runtime.drift_helpers import MonitorFactory, Split

INTERVAL_S = 0.05


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll until the condition holds; the contract is a reload within 5 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def write_json(path: Path, doc: dict[str, object]) -> None:
    write_atomically(path, json.dumps(doc))


def write_atomically(path: Path, text: str) -> None:
    """Replace the file in one step, as the kubelet swaps a ConfigMap's files: a watcher never
    reads it half-written (which would be a second, different invalid content)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def configmap_dir(root: Path, version: str, doc: dict[str, object]) -> None:
    """Lay out or update a directory the way the kubelet mounts a ConfigMap volume.

    ``drift.json -> ..data/drift.json`` and ``..data -> ..<version>``; an update writes a new
    version directory and atomically renames a new ``..data`` symlink over the old one.
    """
    version_dir = root / f"..{version}"
    version_dir.mkdir()
    (version_dir / "drift.json").write_text(json.dumps(doc))
    tmp_link = root / "..data_tmp"
    tmp_link.symlink_to(version_dir.name)
    os.replace(tmp_link, root / "..data")
    if not (root / "drift.json").is_symlink():
        (root / "drift.json").symlink_to("..data/drift.json")


def test_threshold_change_in_the_file_reaches_the_running_monitor(
    tmp_path: Path, make_monitor: MonitorFactory, split: Split
) -> None:
    path = tmp_path / "drift.json"
    write_json(path, {"pValueThreshold": 0.05})
    monitor = make_monitor(window_size=50, check_every=25)
    monitor.append(split.held_out[:60])
    watcher = watch_config_file(path, INTERVAL_S, monitor.update_config)
    try:
        write_json(path, {"detector": "mmd", "pValueThreshold": 0.01, "consecutive": 3})
        assert wait_for(lambda: monitor.config.p_value_threshold == 0.01)
    finally:
        watcher.stop()
    snap = monitor.snapshot()
    assert (snap["p_value_threshold"], snap["consecutive"]) == (0.01, 3)
    assert (snap["window_fill"], snap["samples_seen"]) == (50, 60)  # the window survived
    assert REGISTRY.get_sample_value("model_drift_p_value_threshold") == 0.01


def test_the_file_as_it_is_at_start_is_applied_at_once(tmp_path: Path) -> None:
    path = tmp_path / "drift.json"
    write_json(path, {"pValueThreshold": 0.2, "windowSize": 300, "checkEvery": 150})
    seen: list[DriftConfig] = []
    watcher = watch_config_file(path, 60.0, seen.append)
    watcher.stop()
    assert len(seen) == 1
    assert (seen[0].p_value_threshold, seen[0].window_size, seen[0].check_every) == (0.2, 300, 150)
    assert seen[0].model_fields_set == {"p_value_threshold", "window_size", "check_every"}


def test_an_invalid_file_logs_one_error_and_keeps_the_last_good_config(
    tmp_path: Path, make_monitor: MonitorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "drift.json"
    write_json(path, {"pValueThreshold": 0.02})
    monitor = make_monitor()
    with caplog.at_level(logging.ERROR, logger="aiops_runtime.drift"):
        watcher = watch_config_file(path, INTERVAL_S, monitor.update_config)
        try:
            assert monitor.config.p_value_threshold == 0.02
            write_json(path, {"pValueThreshold": 1.5})
            time.sleep(INTERVAL_S * 8)  # several polls of the same bad content
            write_atomically(path, "{not json")
            time.sleep(INTERVAL_S * 8)
            write_json(path, {"pValueThreshold": 0.03})
            assert wait_for(lambda: monitor.config.p_value_threshold == 0.03)
        finally:
            watcher.stop()
    errors = [r for r in caplog.records if "invalid" in r.getMessage()]
    assert len(errors) == 2  # one per bad content, not one per poll
    assert "pValueThreshold" in errors[0].getMessage()


def test_configmap_symlink_swap_is_picked_up(tmp_path: Path, make_monitor: MonitorFactory) -> None:
    configmap_dir(tmp_path, "2026_01_01_00_00_00.1", {"pValueThreshold": 0.05})
    monitor = make_monitor()
    watcher = watch_config_file(tmp_path / "drift.json", INTERVAL_S, monitor.update_config)
    try:
        configmap_dir(tmp_path, "2026_01_01_00_05_00.2", {"pValueThreshold": 0.001})
        assert wait_for(lambda: monitor.config.p_value_threshold == 0.001)
        configmap_dir(tmp_path, "2026_01_01_00_10_00.3", {"pValueThreshold": 0.1})
        assert wait_for(lambda: monitor.config.p_value_threshold == 0.1)
    finally:
        watcher.stop()


def test_a_missing_file_is_tolerated_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "drift.json"
    seen: list[DriftConfig] = []
    watcher = watch_config_file(path, INTERVAL_S, seen.append)
    try:
        time.sleep(INTERVAL_S * 3)
        assert seen == []
        write_json(path, {"consecutive": 5})
        assert wait_for(lambda: len(seen) == 1)
    finally:
        watcher.stop()
    assert seen[0].consecutive == 5

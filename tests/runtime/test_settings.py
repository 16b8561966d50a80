"""The settings table of docs/runtime.md is exactly the one generated from RuntimeSettings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aiops_runtime.settings import RuntimeSettings, settings_markdown

MANUAL = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"
START = "<!-- runtime-settings:start -->"
END = "<!-- runtime-settings:end -->"
FIX = "regenerate it with `aiops-runtime settings-table`"


def manual_section() -> str:
    text = MANUAL.read_text() if MANUAL.exists() else ""
    assert START in text, f"docs/runtime.md has no {START} … {END} section; {FIX}"
    assert END in text, f"docs/runtime.md has no {END} after {START}; {FIX}"
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def test_the_manuals_settings_table_matches_the_settings() -> None:
    assert manual_section() == settings_markdown().strip(), (
        f"docs/runtime.md's table is stale; {FIX}"
    )


def test_every_setting_has_a_row_with_a_description() -> None:
    table = settings_markdown()
    for name, field in RuntimeSettings.model_fields.items():
        assert field.description, name
    assert table.count("\n") == len(RuntimeSettings.model_fields) + 2
    assert "| `DRIFT_P_THRESHOLD` | float | `0.05` |" in table


def test_the_cli_prints_the_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aiops_runtime.cli", "settings-table"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout == settings_markdown()


def test_the_removed_online_detectors_are_refused_by_the_runtime() -> None:
    """A drift ConfigMap naming one (an old operator) is refused, and the last good one kept."""
    from pydantic import ValidationError

    from aiops_runtime.settings import DriftConfig

    with pytest.raises(ValidationError, match="'mmd' or 'ks'"):
        DriftConfig.model_validate({"detector": "lsdd-online"})

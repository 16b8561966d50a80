"""The settings table of docs/operator.md is exactly the one generated from OperatorSettings."""

from __future__ import annotations

from pathlib import Path

from aiops_operator.settings import settings_table

MANUAL = Path(__file__).resolve().parents[2] / "docs" / "operator.md"
START, END = "<!-- operator-settings:start -->", "<!-- operator-settings:end -->"


def test_the_manuals_settings_table_matches_the_settings():
    text = MANUAL.read_text()
    assert START in text, "docs/operator.md lacks the operator settings section"
    assert END in text, "docs/operator.md lacks the end of the operator settings section"
    section = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert section == settings_table().strip(), (
        "docs/operator.md's settings table is stale;"
        " regenerate it with `aiops-operator settings-table`"
    )

"""The README's operator settings table is exactly the one generated from OperatorSettings."""

from __future__ import annotations

from pathlib import Path

from aiops_operator.settings import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- operator-settings:start -->", "<!-- operator-settings:end -->"


def test_readme_operator_settings_table_matches_the_settings():
    text = README.read_text()
    assert START in text, "README.md lacks the operator settings section"
    assert END in text, "README.md lacks the end of the operator settings section"
    section = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert section == settings_table().strip(), (
        "README operator settings are stale; regenerate with `aiops-operator settings-table`"
    )

"""The text log formats keep which ModelService a line is about, and why."""

from __future__ import annotations

import logging

from aiops_operator.logs import ExtrasInText


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("aiops_operator.drift", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_a_modelservice_line_names_it_and_its_reason() -> None:
    rec = record(
        "runtime drift state unreadable", namespace="team-a", modelservice="bc", error="refused"
    )
    assert ExtrasInText().filter(rec)
    assert rec.getMessage() == "[team-a/bc] runtime drift state unreadable (error=refused)"


def test_arguments_are_formatted_once_and_a_second_handler_adds_nothing() -> None:
    rec = record("drift status not written: %s", "Timeout", namespace="ns", modelservice="m")
    ExtrasInText().filter(rec)
    ExtrasInText().filter(rec)
    assert rec.getMessage() == "[ns/m] drift status not written: Timeout"


def test_lines_about_no_modelservice_are_left_alone() -> None:
    rec = record("drift loop started", drift_poll_interval_s=30.0)
    ExtrasInText().filter(rec)
    assert rec.getMessage() == "drift loop started"

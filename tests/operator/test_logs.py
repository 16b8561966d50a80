"""The text log formats keep which ModelService a line is about, and why."""

from __future__ import annotations

import logging

from aiops_operator.logs import ExtrasInText, configure


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


def test_kopfs_own_lines_about_an_object_name_it_in_the_plain_format() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure("plain", verbose=False)
        (handler,) = [h for h in root.handlers if h not in handlers]
        rec = record("Handler 'reconcile' failed temporarily")
        rec.k8s_ref = {"namespace": "team-a", "name": "bc"}
        assert handler.format(rec) == "[team-a/bc] Handler 'reconcile' failed temporarily"
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

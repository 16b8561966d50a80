"""kopf_storage.py: Kopf's bookkeeping of a handled ModelService stays in the operator's memory
(no annotation written on it), and an earlier version's annotation is taken off."""

from __future__ import annotations

from typing import Any

import kopf

from aiops_operator.kopf_storage import LEGACY_DIFFBASE, HandledGenerations, RetryProgress
from aiops_operator.spec import GROUP


def body(annotations: dict[str, str] | None = None) -> kopf.Body:
    meta: dict[str, Any] = {"name": "a", "namespace": "ns", "uid": "u1", "generation": 2}
    if annotations is not None:
        meta["annotations"] = annotations
    return kopf.Body({"metadata": meta, "spec": {"model": {"uri": "s3://m"}}, "status": {}})


def test_a_handled_generation_shows_kopf_no_change_and_an_unhandled_one_nothing_stored() -> None:
    handled = HandledGenerations(lambda b: True)
    ms = body()
    assert handled.fetch(body=ms) == handled.build(body=ms)  # Kopf finds no diff: no handler
    assert HandledGenerations(lambda b: False).fetch(body=ms) is None  # Kopf calls reconcile


def test_storing_writes_nothing_on_the_modelservice() -> None:
    patch = kopf.Patch()
    HandledGenerations(lambda b: True).store(body=body(), patch=patch, essence={})
    assert not patch


def test_an_earlier_versions_copy_of_the_spec_is_handled_again_and_then_removed() -> None:
    old = body({LEGACY_DIFFBASE: '{"spec": {}}', "team": "x"})
    storage = HandledGenerations(lambda b: True)
    assert storage.fetch(body=old) is None  # so that Kopf stores, and storing removes it
    patch = kopf.Patch()
    storage.store(body=old, patch=patch, essence={})
    assert dict(patch) == {"metadata": {"annotations": {LEGACY_DIFFBASE: None}}}


def test_a_retried_handlers_progress_is_kept_without_kopfs_marker() -> None:
    record: Any = {"started": "2026-12-06T00:00:00Z", "retries": 1, "success": False}
    ours, kopfs = kopf.Patch(), kopf.Patch()
    RetryProgress(prefix=GROUP).store(key="reconcile", record=record, body=body(), patch=ours)
    kopf.AnnotationsProgressStorage(prefix=GROUP).store(
        key="reconcile", record=record, body=body(), patch=kopfs
    )
    marker = f"{GROUP}/kopf-managed"
    assert f"{GROUP}/reconcile" in ours["metadata"]["annotations"]
    assert marker not in ours["metadata"]["annotations"]
    assert marker in kopfs["metadata"]["annotations"]  # what Kopf's own storage adds

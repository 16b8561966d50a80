"""Deleting a ModelService never waits for the operator: no finalizer, even on objects an
older operator (a Kopf timer per ModelService) left its finalizer on; and an upgraded operator
takes Kopf's copy of the spec off them (kopf_storage.py)."""

from __future__ import annotations

import time

import pytest

from aiops_operator.kopf_storage import LEGACY_DIFFBASE
from tests.helpers import wait_for
from tests.operator.operator_helpers import Kube, OperatorProcess, example

pytestmark = pytest.mark.integration

KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"  # what the timer-based operator added


def test_deleting_a_modelservice_while_the_operator_is_stopped_completes_at_once(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    kube.apply(example("stopped"))
    wait_for("Ready=True", lambda: kube.ready("stopped"), 30)
    operator_process.stop()
    try:
        began = time.monotonic()
        kube.kubectl("delete", "modelservice", "stopped", "--wait=false")
        wait_for("the ModelService gone", lambda: kube.get("modelservice", "stopped") is None, 5)
        took = time.monotonic() - began
    finally:
        operator_process.start()
    print(f"deleted with the operator stopped in {took:.2f} s")


def test_an_upgraded_operator_removes_the_old_kopf_finalizer(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    operator_process.stop()
    try:
        old = example("upgraded")
        old["metadata"]["finalizers"] = [KOPF_FINALIZER]
        old["metadata"]["annotations"] = {LEGACY_DIFFBASE: '{"spec": {}}'}  # Kopf's, then
        kube.apply(old)
    finally:
        operator_process.start()

    def finalizers() -> list[str] | None:
        meta = (kube.get("modelservice", "upgraded") or {}).get("metadata") or {}
        return meta.get("finalizers") or None

    wait_for("Ready=True", lambda: kube.ready("upgraded"), 30)
    wait_for("the old finalizer removed", lambda: finalizers() is None, 15)

    def annotations() -> dict[str, str]:
        meta = (kube.get("modelservice", "upgraded") or {}).get("metadata") or {}
        return dict(meta.get("annotations") or {})

    wait_for("the old copy of the spec removed", lambda: LEGACY_DIFFBASE not in annotations(), 15)
    kube.kubectl("delete", "modelservice", "upgraded", "--wait=false")
    wait_for("the ModelService gone", lambda: kube.get("modelservice", "upgraded") is None, 5)

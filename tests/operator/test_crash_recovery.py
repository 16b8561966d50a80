"""kill -9 of the operator in the middle of a burst of creates, updates and deletes; after a
restart everything converges: every child exactly once, owned by the live ModelService, with the
spec's values, and nothing left of the deleted ones."""

from __future__ import annotations

from typing import Any

import pytest

from tests.operator.operator_helpers import Kube, OperatorProcess, docs, wait_converged

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kill_9_during_a_burst_then_restart_converges(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    first = [f"first-{i:02d}" for i in range(10)]
    second = [f"second-{i:02d}" for i in range(10)]
    third = [f"third-{i:02d}" for i in range(10)]

    kube.kubectl("apply", "-f", "-", input_text=docs(first))
    kube.kubectl("apply", "-f", "-", input_text=docs(second))
    operator_process.kill()  # while it is still working through the creates
    try:
        kube.kubectl("apply", "-f", "-", input_text=docs(third))
        kube.kubectl("apply", "-f", "-", input_text=docs(first, threshold=0.2))
        kube.kubectl("delete", "modelservices", *second, "--wait=false")
    finally:
        operator_process.start()

    expected: dict[str, Any] = {n: 0.2 for n in first} | {n: 0.05 for n in third}
    wait_converged(kube, expected, "convergence after the restart")

"""The operator memo: everything the handlers share, handed to each of them by Kopf.

`kopf.run(memo=Operator.create(settings))` makes this the operator's memo; Kopf passes it to
startup and cleanup handlers as `memo`, and a shallow copy of it to the handlers of each object
(Kopf's docs/memos.rst), so every part is a shared object and the memo itself is frozen.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiops_operator.child_watch import ChildWatch
from aiops_operator.drift_poller import DriftPoller
from aiops_operator.heap import Trimmer
from aiops_operator.settings import OperatorSettings
from aiops_operator.state import State
from aiops_operator.status_writer import StatusWriter


@dataclass(frozen=True)
class Operator:
    """Settings, knowledge, the status writer, the drift poller, the children's watch, the
    heap trimmer and the metrics server."""

    settings: OperatorSettings
    state: State
    status: StatusWriter
    drift: DriftPoller
    children: ChildWatch
    heap: Trimmer
    metrics_server: Any = None  # started before Kopf runs (cli.py), stopped at cleanup

    @classmethod
    def create(cls, settings: OperatorSettings, metrics_server: Any = None) -> Operator:
        """A memo with empty knowledge for these settings."""
        state = State(converging=asyncio.Semaphore(settings.api_connections))
        writer = StatusWriter(state, settings)
        drift = DriftPoller(settings, state, writer)
        children = ChildWatch(settings)
        return cls(settings, state, writer, drift, children, Trimmer(), metrics_server)

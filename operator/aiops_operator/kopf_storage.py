"""Where Kopf keeps its own bookkeeping of a ModelService: in the operator's memory, not on it.

Kopf decides whether a change needs its create/update handlers by comparing the object with
the "essence" it stored after the last handling, by default in an annotation: one PATCH of
every ModelService after its first reconcile, carrying a copy of its spec (measured in
bench-operator as `PATCH modelservices`, one per ModelService). The operator already knows
what it handled: the generation whose children it applied or whose spec it rejected (the
Outcome in state.py). `HandledGenerations` answers Kopf from that, so a reconciled ModelService
is never written by Kopf; after a restart nothing is known yet and Kopf calls the handler for
every ModelService, as it calls the resume handler today.

Kopf still records the progress of a handler that failed and is retried (annotations named
`<group>/<handler>`); `RetryProgress` keeps those but drops Kopf's `<group>/kopf-managed`
marker, which would cost the same PATCH once per ModelService and serves only to let other
Kopf operators recognise our annotations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from aiops_operator.spec import GROUP

# The essence earlier versions kept on every ModelService; removed after the next handling.
LEGACY_DIFFBASE = f"{GROUP}/last-handled-configuration"


class HandledGenerations(kopf.DiffBaseStorage):
    """Kopf's diff base: the object as it is when `handled(body)` (nothing new to handle),
    none when not (Kopf then calls the create handler)."""

    def __init__(self, handled: Callable[[kopf.Body], bool]) -> None:
        super().__init__()
        self.handled = handled

    def fetch(self, *, body: kopf.Body) -> Any:
        # An earlier version's annotation counts as not handled: Kopf stores only after a
        # change, and storing is what removes it.
        legacy = LEGACY_DIFFBASE in body.metadata.annotations
        return self.build(body=body) if self.handled(body) and not legacy else None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        # Nothing to store; but an object handled by an earlier version loses its copy of
        # the spec (once: the patch is made only while the annotation is there).
        if LEGACY_DIFFBASE in body.metadata.annotations:
            patch.metadata.annotations[LEGACY_DIFFBASE] = None


class RetryProgress(kopf.AnnotationsProgressStorage):
    """Kopf's progress annotations for handlers being retried, without its marker."""

    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        return None

"""Per-namespace shares of the operator's outbound work, so that one tenant cannot starve others.

Every ModelService's drift timer reads its runtime, and a retrain reaction calls a CI server.
A namespace with many slow or hanging runtimes would otherwise hold most of the HTTP pool and
the event loop's attention; here each namespace gets at most `limit` reads (or triggers) in
flight at once, and waits for its own slots only. (One small semaphore per namespace seen.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator


class NamespaceSlots:
    """At most `limit` holders at once per namespace; other namespaces are not affected."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._held: Counter[str] = Counter()

    @contextlib.asynccontextmanager
    async def hold(self, namespace: str) -> AsyncIterator[None]:
        """Wait for a slot of `namespace`, hold it for the block."""
        async with self._slots.setdefault(namespace, asyncio.Semaphore(self.limit)):
            self._held[namespace] += 1
            try:
                yield
            finally:
                self._held[namespace] -= 1

    def in_use(self, namespace: str) -> int:
        """How many slots of `namespace` are held right now."""
        return self._held[namespace]

"""One namespace's reads wait for its own slots only: a tenant's hanging runtimes cannot delay
another tenant's drift reads (fairness.NamespaceSlots, as the drift loop uses it)."""

from __future__ import annotations

import asyncio

from aiops_operator.fairness import NamespaceSlots


def test_a_namespace_holds_at_most_its_limit_and_others_pass() -> None:
    async def scenario() -> tuple[int, float, int]:
        slots = NamespaceSlots(limit=2)
        peak = 0
        release = asyncio.Event()

        async def hanging_read() -> None:  # a runtime that does not answer until released
            nonlocal peak
            async with slots.hold("greedy"):
                peak = max(peak, slots.in_use("greedy"))
                await release.wait()

        hanging = [asyncio.create_task(hanging_read()) for _ in range(10)]
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with slots.hold("neighbour"):  # another tenant's read goes at once
            waited = loop.time() - started
        held = slots.in_use("greedy")
        release.set()
        await asyncio.gather(*hanging)
        return peak, waited, held

    peak, waited, held = asyncio.run(scenario())
    assert peak == 2  # never more than the limit in flight for the greedy namespace
    assert held == 2
    assert waited < 0.01


def test_every_waiter_of_a_namespace_gets_its_turn() -> None:
    async def scenario() -> list[int]:
        slots = NamespaceSlots(limit=1)
        done: list[int] = []

        async def read(i: int) -> None:
            async with slots.hold("ns"):
                await asyncio.sleep(0.001)
                done.append(i)

        await asyncio.gather(*(read(i) for i in range(20)))
        return done

    assert sorted(asyncio.run(scenario())) == list(range(20))

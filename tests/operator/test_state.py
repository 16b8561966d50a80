"""ChildrenFirst: bookkeeping writes (status, Kopf's annotations) wait for child writes."""

from __future__ import annotations

import asyncio

from aiops_operator.state import ChildrenFirst


def test_nothing_in_flight_means_no_wait() -> None:
    async def scenario() -> None:
        gate = ChildrenFirst()
        await asyncio.wait_for(gate.wait_turn(max_wait_s=60), timeout=0.05)

    asyncio.run(scenario())


def test_a_bookkeeping_write_waits_until_every_child_write_ends() -> None:
    order: list[str] = []

    async def child(gate: ChildrenFirst, name: str, seconds: float) -> None:
        async with gate.child_write():
            await asyncio.sleep(seconds)
            order.append(name)

    async def status(gate: ChildrenFirst) -> None:
        await gate.wait_turn(max_wait_s=60)
        order.append("status")

    async def scenario() -> None:
        gate = ChildrenFirst()
        first = asyncio.create_task(child(gate, "deployment", 0.05))
        second = asyncio.create_task(child(gate, "service", 0.15))
        await asyncio.sleep(0)  # both writes are in flight
        await asyncio.gather(status(gate), first, second)
        assert gate.in_flight == 0

    asyncio.run(scenario())
    assert order == ["deployment", "service", "status"]


def test_the_wait_is_bounded_while_child_writes_never_end() -> None:
    async def scenario() -> float:
        gate = ChildrenFirst()
        loop = asyncio.get_running_loop()
        async with gate.child_write():
            began = loop.time()
            await gate.wait_turn(max_wait_s=0.1)
            return loop.time() - began

    waited = asyncio.run(scenario())
    assert 0.09 <= waited < 1.0


def test_a_failed_child_write_still_ends_the_wait() -> None:
    async def scenario() -> None:
        gate = ChildrenFirst()
        try:
            async with gate.child_write():
                raise OSError("connection reset")
        except OSError:
            pass
        assert gate.in_flight == 0
        await asyncio.wait_for(gate.wait_turn(max_wait_s=60), timeout=0.05)

    asyncio.run(scenario())


def test_each_event_loop_gets_its_own_idle_event() -> None:
    gate = ChildrenFirst()

    async def child() -> None:
        async with gate.child_write():
            await asyncio.sleep(0.05)

    async def use() -> None:
        task = asyncio.create_task(child())
        await asyncio.sleep(0)  # the write is in flight: wait_turn really waits on the Event
        await asyncio.wait_for(gate.wait_turn(max_wait_s=60), timeout=5)
        await task

    asyncio.run(use())
    asyncio.run(use())  # an Event bound to the first loop would raise RuntimeError here

"""Leader election: the take/renew/wait rule, the Lease written, and two electors racing on one
Lease held by an in-memory API server with resourceVersion conflicts."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from aiops_operator.kube import KubeApiError
from aiops_operator.leader import (
    LeaderElector,
    Move,
    Observed,
    decide,
    lease_spec,
    released_spec,
    run_elected,
)
from aiops_operator.operator_metrics import LEADER

NOW = datetime(2026, 12, 2, 18, 0, 0, 123456, tzinfo=UTC)


def _held(holder: str, seen_at: float = 100.0, duration: int = 15) -> Observed:
    return Observed({"holderIdentity": holder, "leaseDurationSeconds": duration}, "7", seen_at)


def test_a_missing_lease_is_created():
    assert decide(None, "me", now=0.0) is Move.CREATE


def test_the_holder_renews_its_own_lease_even_when_it_looks_expired():
    assert decide(_held("me"), "me", now=1000.0) is Move.RENEW


def test_a_standby_waits_while_the_lease_changed_within_its_duration():
    assert decide(_held("other"), "me", now=114.9) is Move.WAIT


def test_a_standby_takes_a_lease_unchanged_for_its_duration_on_its_own_clock():
    assert decide(_held("other"), "me", now=115.0) is Move.TAKE


def test_a_released_lease_is_taken_at_once():
    assert decide(_held(""), "me", now=100.0) is Move.TAKE


def test_taking_counts_a_transition_and_renewing_keeps_acquire_time():
    prior = {"holderIdentity": "other", "leaseDurationSeconds": 15, "leaseTransitions": 3,
             "acquireTime": "2026-12-01T00:00:00.000000Z", "renewTime": "x"}  # fmt: skip
    taken = lease_spec(prior, "me", Move.TAKE, 15, NOW)
    assert taken == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-12-02T18:00:00.123456Z",
        "renewTime": "2026-12-02T18:00:00.123456Z",
        "leaseTransitions": 4,
    }
    renewed = lease_spec({**taken, "acquireTime": "earlier"}, "me", Move.RENEW, 15, NOW)
    assert renewed["acquireTime"] == "earlier"
    assert renewed["leaseTransitions"] == 4
    assert lease_spec(None, "me", Move.CREATE, 15, NOW)["leaseTransitions"] == 0


def test_a_released_lease_names_no_holder():
    released = released_spec({"holderIdentity": "me", "leaseDurationSeconds": 15}, NOW)
    assert released["holderIdentity"] == ""
    assert decide(Observed(released, "8", 0.0), "standby", now=0.0) is Move.TAKE


class FakeLeases:
    """One Lease as the API server keeps it: POST creates, PUT needs the current resourceVersion."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        await asyncio.sleep(0)  # let the other elector interleave
        if method == "GET":
            if self.lease is None:
                raise KubeApiError(404, "NotFound", "no lease")
            return copy.deepcopy(self.lease)
        if method == "POST" and self.lease is not None:
            raise KubeApiError(409, "AlreadyExists", "lease exists")
        if method == "PUT":
            assert self.lease is not None
            if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
                raise KubeApiError(409, "Conflict", "the object has been modified")
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    async def close(self) -> None:
        return None


def _elector(api: FakeLeases, identity: str, duration_s: float = 1) -> LeaderElector:
    return LeaderElector(
        api,  # type: ignore[arg-type]
        namespace="aiops-system",
        name="aiops-operator",
        identity=identity,
        duration_s=duration_s,
        renew_deadline_s=0.2,
        retry_s=0.05,
    )


def test_of_two_electors_racing_for_a_new_lease_exactly_one_leads():
    async def race() -> list[bool]:
        api = FakeLeases()
        a, b = _elector(api, "a"), _elector(api, "b")
        first = await asyncio.gather(a.try_once(), b.try_once())
        return [*first, await a.try_once(), await b.try_once()]

    first_a, first_b, again_a, again_b = asyncio.run(race())
    assert [first_a, first_b].count(True) == 1
    assert (again_a, again_b) == (first_a, first_b)


def test_a_standby_takes_over_only_after_the_leader_stops_renewing():
    async def failover() -> tuple[bool, bool, dict[str, Any]]:
        api = FakeLeases()
        leader, standby = _elector(api, "leader"), _elector(api, "standby")
        await leader.acquire()
        early = await standby.try_once()
        await asyncio.sleep(0.5)
        await leader.try_once()  # a renewal: the standby's clock starts again
        await standby.try_once()
        await asyncio.sleep(0.6)
        still_waiting = await standby.try_once()  # 0.6 s after the renewal < 1 s
        await asyncio.sleep(0.5)
        assert not early
        assert not still_waiting
        taken = await standby.try_once()
        assert api.lease is not None
        return taken, await leader.try_once(), api.lease["spec"]

    taken, old_leader_renews, spec = asyncio.run(failover())
    assert taken
    assert not old_leader_renews
    assert spec["holderIdentity"] == "standby"
    assert spec["leaseTransitions"] == 1


def test_hold_returns_when_another_replica_took_the_lease():
    async def lose() -> None:
        api = FakeLeases()
        leader = _elector(api, "leader")
        await leader.acquire()
        assert api.lease is not None
        api.lease["spec"]["holderIdentity"] = "thief"
        api.version += 1
        api.lease["metadata"]["resourceVersion"] = str(api.version)
        await asyncio.wait_for(leader.hold(), timeout=2)

    asyncio.run(lose())


def test_hold_returns_when_renewals_fail_past_the_renew_deadline():
    class Unreachable(FakeLeases):
        broken = False

        async def request(self, method: str, path: str, **kwargs: Any) -> Any:
            if self.broken:
                raise OSError("connection refused")
            return await super().request(method, path, **kwargs)

    async def cut_off() -> float:
        api = Unreachable()
        leader = _elector(api, "leader")
        await leader.acquire()
        api.broken = True
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(leader.hold(), timeout=2)
        return loop.time() - start

    # It gives up one retry period (0.05 s) before the renew deadline (0.2 s) could pass.
    assert 0.1 <= asyncio.run(cut_off()) < 0.5


def test_release_lets_a_standby_take_over_at_once():
    async def hand_over() -> bool:
        api = FakeLeases()
        leader, standby = _elector(api, "leader", 60), _elector(api, "standby", 60)
        await leader.acquire()
        assert not await standby.try_once()
        await leader.release()
        return await standby.try_once()

    assert asyncio.run(hand_over())


class ScriptedElector:
    """An elector that leads at once and loses the Lease after `lose_after` seconds (or never)."""

    def __init__(self, lose_after: float | None) -> None:
        self.lose_after = lose_after
        self.identity = "me"
        self.client = FakeLeases()
        self.released = False

    async def acquire(self) -> None:
        return None

    async def hold(self) -> None:
        await asyncio.sleep(self.lose_after if self.lose_after is not None else 3600)

    async def release(self) -> None:
        self.released = True


def test_losing_the_lease_ends_the_process_at_once(monkeypatch: Any) -> None:
    def exit_now(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr("aiops_operator.leader.os._exit", exit_now)
    operating: list[str] = []

    async def operate() -> None:
        operating.append("started")
        await asyncio.sleep(3600)

    elector = ScriptedElector(lose_after=0.05)
    with pytest.raises(SystemExit) as ended:
        asyncio.run(run_elected(elector, operate, ""))  # type: ignore[arg-type]
    assert ended.value.code == 1
    assert operating == ["started"]
    assert not elector.released


def test_an_operator_ending_cleanly_releases_the_lease() -> None:
    async def operate() -> None:
        await asyncio.sleep(0.05)

    elector = ScriptedElector(lose_after=None)
    assert asyncio.run(run_elected(elector, operate, "")) == 0  # type: ignore[arg-type]
    assert elector.released


def _leader_gauge() -> float | None:
    return REGISTRY.get_sample_value("aiops_operator_leader")


class GrantedLater(ScriptedElector):
    """Leads once `granted` is set; records the leader gauge while it waits."""

    def __init__(self) -> None:
        super().__init__(lose_after=None)
        self.granted = asyncio.Event()
        self.gauge_while_waiting: float | None = None

    async def acquire(self) -> None:
        self.gauge_while_waiting = _leader_gauge()
        await self.granted.wait()


def test_the_leader_gauge_is_0_while_standing_by_and_1_while_leading() -> None:
    gauge_while_operating: list[float | None] = []

    async def operate() -> None:
        gauge_while_operating.append(_leader_gauge())

    async def scenario(elector: GrantedLater) -> int:
        LEADER.set(1)  # whatever an earlier run in this process left
        running = asyncio.ensure_future(run_elected(elector, operate, ""))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        elector.granted.set()
        return await running

    elector = GrantedLater()
    assert asyncio.run(scenario(elector)) == 0
    assert elector.gauge_while_waiting == 0.0
    assert gauge_while_operating == [1.0]
    assert _leader_gauge() == 0.0  # the Lease released: no longer leading

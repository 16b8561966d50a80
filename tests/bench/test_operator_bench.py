"""The operator and client benchmarks' figures: settled memory, the targets, the comparison."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from tests.bench.bench_modules import load

operator_bench = load("operator_bench")
client_bench = load("kube_client_bench")

MET = {"converge_s": 41.0, "rss_mb": 120.0, "ratio_p50_vs_floor": 1.2, "rss_return_ratio": 1.05}


def test_settled_rss_is_the_lowest_sample_so_a_passing_spike_does_not_count() -> None:
    assert operator_bench.settled_mb([80.0, 95.5, 79.2, 81.0]) == 79.2
    with pytest.raises(ValueError, match="no RSS samples"):
        operator_bench.settled_mb([])


def test_every_figure_within_its_target_meets_them_all() -> None:
    assert operator_bench.missed_targets(MET) == []


def test_a_figure_above_its_target_is_named() -> None:
    result = {**MET, "rss_return_ratio": 1.11, "ratio_p50_vs_floor": 1.51}
    assert operator_bench.missed_targets(result) == ["ratio_p50_vs_floor", "rss_return_ratio"]


def test_no_convergence_misses_the_convergence_target() -> None:
    assert operator_bench.missed_targets({**MET, "converge_s": None}) == ["converge_s"]
    assert operator_bench.missed_targets({k: v for k, v in MET.items() if k != "rss_mb"}) == [
        "rss_mb"
    ]


def test_the_targets_are_the_issues() -> None:
    assert operator_bench.TARGETS == {
        "converge_s": 60.0,
        "rss_mb": 150.0,
        "ratio_p50_vs_floor": 1.5,
        "rss_return_ratio": 1.10,
    }


def test_each_configmap_is_a_copy_named_in_its_namespace() -> None:
    template = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"a": "b"}}}
    docs = client_bench.configmaps(template, "ns", 3)
    assert [d["metadata"]["name"] for d in docs] == ["cm-0000", "cm-0001", "cm-0002"]
    assert {d["metadata"]["namespace"] for d in docs} == {"ns"}
    docs[0]["metadata"]["labels"]["a"] = "changed"
    assert docs[1]["metadata"]["labels"] == {"a": "b"} == template["metadata"]["labels"]


def _run(client: str, total_s: float, run_rss_mb: float) -> dict[str, object]:
    return {
        "client": client, "apply_s": total_s / 2, "list_s": 0.1, "watch_s": 0.2,
        "total_s": total_s, "import_rss_mb": 10.0, "run_rss_mb": run_rss_mb, "peak_mb": 60.0,
    }  # fmt: skip


def test_a_client_is_summarized_by_its_best_time_and_its_worst_memory() -> None:
    runs = [_run("kube.py", 4.0, 3.0), _run("kube.py", 5.0, 6.0), _run("lightkube", 8.0, 9.0)]
    summary = client_bench.summarize(runs)
    assert summary["kube.py"]["total_s"] == 4.0
    assert summary["kube.py"]["apply_s"] == 2.0
    assert summary["kube.py"]["run_rss_mb"] == 6.0
    assert client_bench.compare(summary) == {
        "lightkube_vs_kubepy_total_s": 2.0,
        "lightkube_vs_kubepy_import_rss_mb": 1.0,
        "lightkube_vs_kubepy_run_rss_mb": 1.5,
    }


def test_the_parts_of_a_run_are_the_gaps_between_its_moments() -> None:
    assert client_bench.parts(10.0, 12.5, 13.0, 14.5) == {
        "apply_s": 2.5,
        "list_s": 0.5,
        "watch_s": 1.5,
    }


def test_only_the_benchmarks_configmaps_are_counted() -> None:
    assert client_bench.ours(["kube-root-ca.crt", "cm-0000", "cm-0001"]) == ["cm-0000", "cm-0001"]


def test_cpu_used_is_the_cpu_a_process_spent_since_the_snapshot() -> None:
    import os
    import time

    me = {"bench": os.getpid()}
    before = operator_bench.cpu_snapshot(me)
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    used = operator_bench.cpu_used(me, before)
    assert set(used) == {"bench"}
    assert 0.2 <= used["bench"] <= 1.0


def test_watch_forever_survives_refused_watches_and_error_events() -> None:
    import asyncio

    from aiops_operator.kube import KubeApiError

    class Client:
        """Each watch call plays the next script: events to yield, or an error to raise."""

        def __init__(self) -> None:
            self.calls = 0
            self.scripts: list[Any] = [
                KubeApiError(429, "TooManyRequests", "try again"),
                [{"type": "ADDED", "object": {"n": 1}}, {"type": "ERROR", "object": {}}],
                [{"type": "MODIFIED", "object": {"n": 2}}],
            ]

        async def watch(self, path: str, params: dict[str, str]) -> Any:
            script = self.scripts[min(self.calls, len(self.scripts) - 1)]
            self.calls += 1
            if isinstance(script, Exception):
                raise script
            for event in script:
                yield event

    async def first_two() -> list[Any]:
        seen = []
        async for event in operator_bench.watch_forever(Client(), "/x"):
            seen.append(event["object"])
            if len(seen) == 2:
                return seen
        return seen

    assert asyncio.run(asyncio.wait_for(first_two(), 10)) == [{"n": 1}, {"n": 2}]


def test_until_stalled_waits_for_the_first_progress_then_guards_against_a_stall() -> None:
    import asyncio
    import time

    def counter(steps: list[tuple[float, int]]) -> Any:
        began = time.monotonic()

        def count() -> int:
            elapsed = time.monotonic() - began
            return max([n for at, n in steps if at <= elapsed], default=0)

        return count

    def run(steps: list[tuple[float, int]], target: int, timeout_s: float) -> bool:
        coro = operator_bench.until_stalled(counter(steps), target, timeout_s, stall_s=0.3)
        return asyncio.run(coro)

    # Nothing for longer than the stall guard, then everything: a slow start is no stall.
    assert run([(0.8, 1), (1.0, 3)], target=3, timeout_s=5) is True
    # Progress, then none for longer than the guard: a stall.
    assert run([(0.1, 1)], target=3, timeout_s=5) is False
    # Never any progress: the timeout ends it.
    started = time.monotonic()
    assert run([], target=3, timeout_s=0.6) is False
    assert time.monotonic() - started >= 0.6


def test_the_operator_runs_with_the_images_allocator() -> None:
    """The bench runs the operator as the image does: PYTHONMALLOC from Dockerfile.operator."""
    assert operator_bench.image_env("PYTHONMALLOC") == "malloc"
    assert operator_bench.image_env("USER") == "aiops-operator"  # a later word of the same ENV
    assert operator_bench.image_env("NO_SUCH_VARIABLE") == ""


def test_the_memory_report_sees_a_block_malloc_hands_out_and_where_it_is_resident() -> None:
    """glibc's account follows an allocation (`in_use` grows by it, not by the free rest)."""
    import ctypes
    import ctypes.util

    tracer = load("operator_tracemalloc")
    before = tracer.memory_report()
    assert before["malloc"]["arenas"] >= 1
    assert before["threads"] >= 1
    assert before["rss"]["file"] > 0  # the interpreter and its libraries are mapped files
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024 - 64) for _ in range(160)]  # ~10 MiB below the mmap threshold
    try:
        during = tracer.memory_report()
    finally:
        for block in blocks:
            libc.free(block)
    grown = during["malloc"]["in_use"] - before["malloc"]["in_use"]
    assert 9.5 * 2**20 < grown < 11 * 2**20
    with socket.socket(), socket.socket():
        assert tracer.memory_report()["sockets"] == before["sockets"] + 2

    class Kept:
        pass

    kept = [Kept() for _ in range(50)]
    name = f"{Kept.__module__}.{Kept.__qualname__}"
    assert tracer.memory_report()["objects"][name] == len(kept)


def test_the_memory_reports_are_printed_in_mib_by_what_holds_them(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    report = {
        "traced": 10 * 2**20,
        "tracemalloc_overhead": 2 * 2**20,
        "malloc": {
            "arenas": 3,
            "system": 40 * 2**20,
            "free_in_bins": 8 * 2**20,
            "in_use": 32 * 2**20,
        },
        "rss": {"[heap]": 30 * 2**20, "anon": 5 * 2**20, "file": 20 * 2**20},
        "threads": 4,
        "sockets": 7,
        "objects": {"builtins.dict": 100},
    }
    for k in (1, 2, 3):
        grown = {"builtins.dict": 100 + 50 * k, "kopf.Stream": 300 * (k - 1)}
        (tmp_path / f"memory-{k}.json").write_text(json.dumps({**report, "objects": grown}))
    operator_bench.print_memory_reports(tmp_path)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 5
    assert lines[3].startswith("memory after delete:")
    assert lines[4] == "objects after delete vs baseline: +600 kopf.Stream, +100 builtins.dict"
    assert "traced=10.0 untraced_in_malloc=20.0 malloc_free=8.0" in lines[0]
    assert "rss_heap=30.0" in lines[0]
    assert "arenas=3 threads=4 sockets=7" in lines[0]


def test_the_api_servers_requests_are_counted_by_verb_and_resource() -> None:
    metrics = """# HELP apiserver_request_total Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",resource="deployments",subresource="",verb="APPLY"} 3
apiserver_request_total{code="200",resource="deployments",subresource="",verb="APPLY"} 2
apiserver_request_total{code="200",resource="modelservices",subresource="status",verb="PATCH"} 4
# HELP apiserver_request_duration_seconds Response latency
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_count{resource="pods",verb="GET"} 9
"""
    before = operator_bench.parse_request_counts(metrics)
    assert before == {"APPLY deployments": 5, "PATCH modelservices/status": 4}
    after = {**before, "APPLY deployments": 12, "POST configmaps": 1}
    made = operator_bench.requests_made(before, after)
    assert made == {"APPLY deployments": 7, "POST configmaps": 1}  # most first, none unmade
    assert list(made) == ["APPLY deployments", "POST configmaps"]


def test_the_floor_creates_the_children_the_operator_applies_for_the_example() -> None:
    kinds = {plural for _, plural in operator_bench.CHILD_PLURALS}
    assert {"deployments", "services", "configmaps", "networkpolicies"} <= kinds
    owner = operator_bench.Owner(name="m", namespace="ns", uid="u", generation=1)
    assert all(c["metadata"]["name"] == "m" for c in operator_bench.floor_children(owner))


def test_a_kind_the_operator_applies_and_the_floor_does_not_create_is_named() -> None:
    applied = {f"APPLY {plural}": 10 for _, plural in operator_bench.CHILD_PLURALS}
    assert operator_bench.children_unlike_floor({**applied, "POST modelservices": 10}) == []
    extra = {**applied, "APPLY horizontalpodautoscalers": 10}
    assert operator_bench.children_unlike_floor(extra) == ["horizontalpodautoscalers"]
    fewer = {k: v for k, v in applied.items() if k != "APPLY networkpolicies"}
    assert operator_bench.children_unlike_floor(fewer) == ["networkpolicies"]


def test_the_runtime_stand_in_answers_each_pod_on_loopback_as_a_quiet_runtime() -> None:
    from aiops_operator.drift_client import DriftClient, Pod

    async def read() -> Any:
        runtimes = operator_bench.RuntimeStandIn()
        await runtimes.start()
        client = DriftClient(runtimes.pattern, port=8080, timeout_s=5)
        try:
            url = client.url("m", "ns", Pod(name="m-abc", ip="198.18.128.9"))
            reading = await client.read("m", "ns", Pod(name="m-abc", ip="198.18.128.9"))
        finally:
            await client.close()
            await runtimes.stop()
        return url, reading, runtimes.reads

    url, reading, reads = asyncio.run(read())
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/ns/m-abc/drift")
    assert "198.18" not in url  # never the pod's IP, which routes nowhere on this host
    assert reading.enabled
    assert not reading.drift
    assert reading.checks == 20
    assert reads == 1

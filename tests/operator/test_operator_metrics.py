"""The operator's own /metrics: reconciles and their errors, drift events, retrain triggers."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import Iterator

import kopf
import pytest
from prometheus_client import CollectorRegistry

from aiops_operator import operator_metrics as metrics


@pytest.fixture
def metrics_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = metrics.serve(port, addr="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        metrics.stop(server)


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_reconciles_and_their_errors_are_counted_on_metrics(metrics_url: str) -> None:
    @metrics.counted("unit")
    async def handler(fail: BaseException | None = None) -> str:
        if fail is not None:
            raise fail
        return "done"

    assert asyncio.run(handler()) == "done"
    for error in (kopf.TemporaryError("later"), kopf.PermanentError("never"), KeyError("x")):
        with pytest.raises(type(error)):
            asyncio.run(handler(fail=error))
    samples = scrape(metrics_url)
    assert samples['aiops_operator_reconciles_total{handler="unit"}'] == 4
    for kind in ("temporary", "permanent", "unexpected"):
        assert (
            samples[f'aiops_operator_reconcile_errors_total{{error="{kind}",handler="unit"}}'] == 1
        )


def test_counted_keeps_the_handler_name_kopf_uses_as_its_id() -> None:
    @metrics.counted("unit")
    async def reconcile_something() -> None:
        return None

    assert reconcile_something.__name__ == "reconcile_something"
    assert asyncio.iscoroutinefunction(reconcile_something)


def test_drift_and_retrain_counters_are_exposed(metrics_url: str) -> None:
    metrics.DRIFT_EVENTS.labels(namespace="ns1", modelservice="ms", action="retrain").inc()
    metrics.RETRAIN_TRIGGERS.labels(namespace="ns1", modelservice="ms", result="sent").inc()
    metrics.RETRAIN_TRIGGERS.labels(namespace="ns1", modelservice="ms", result="failed").inc(2)
    metrics.DRIFT_READS.labels(result="unreachable").inc()
    samples = scrape(metrics_url)
    labels = 'action="retrain",modelservice="ms",namespace="ns1"'
    assert samples[f"aiops_operator_drift_events_total{{{labels}}}"] == 1
    sent = 'aiops_operator_retrain_triggers_total{modelservice="ms",namespace="ns1",result="sent"}'
    assert samples[sent] == 1
    assert samples[sent.replace("sent", "failed")] == 2
    assert samples['aiops_operator_drift_reads_total{result="unreachable"}'] >= 1


def test_port_zero_serves_nothing() -> None:
    assert metrics.serve(0, registry=CollectorRegistry()) is None


def test_a_deleted_modelservices_series_are_removed_and_only_its_own(metrics_url: str) -> None:
    for ms in ("gone", "stays"):
        metrics.DRIFT_EVENTS.labels(namespace="ns2", modelservice=ms, action="alert").inc()
        metrics.RETRAIN_TRIGGERS.labels(namespace="ns2", modelservice=ms, result="sent").inc()
        metrics.RETRAIN_SKIPPED.labels(namespace="ns2", modelservice=ms).inc()
    metrics.RETRAIN_SKIPPED.labels(namespace="other", modelservice="gone").inc()

    assert metrics.forget("ns2", "gone") == 3
    text = "\n".join(k for k in scrape(metrics_url) if "_total{" in k)
    assert 'modelservice="gone",namespace="ns2"' not in text
    assert text.count('modelservice="stays",namespace="ns2"') == 3
    assert 'modelservice="gone",namespace="other"' in text
    assert metrics.forget("ns2", "gone") == 0

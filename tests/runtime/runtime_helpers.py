"""Helpers of the runtime tests: an in-process app client, a real uvicorn server on 127.0.0.1,
the runbook's sample row and readers of Prometheus samples."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from aiops_runtime.app import create_app
from aiops_runtime.settings import RuntimeSettings

# The seed runbook's sample request (an in-distribution benign tumour).
RUNBOOK_FEATURES = [
    13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.04781, 0.1885, 0.05766,
    0.2699, 0.7886, 2.058, 23.56, 0.008462, 0.0146, 0.02387, 0.01486, 0.01405, 0.002377,
    15.11, 19.26, 99.7, 711.2, 0.144, 0.1773, 0.239, 0.1288, 0.2977, 0.07259,
]  # fmt: skip


def manifest(model_dir: Path) -> dict[str, Any]:
    """The training manifest of a model directory."""
    return json.loads((model_dir / "manifest.json").read_text())


async def wait_loaded(app: FastAPI, timeout_s: float = 30.0) -> None:
    """Wait until the app finished loading (ready or failed)."""
    state = app.state.runtime
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while state.not_ready_reason == "loading" and not state.ready:
        if loop.time() > deadline:
            raise TimeoutError("the runtime did not finish loading")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def app_client(settings: RuntimeSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app (lifespan running, artifacts loaded or failed)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await wait_loaded(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://runtime") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


class LiveServer:
    """A real uvicorn server with the runtime app, in a thread, on 127.0.0.1."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        for _ in range(3000):
            if self.server.started and self.app.state.runtime.ready:
                break
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn exited")
            threading.Event().wait(0.01)
        else:
            raise TimeoutError("the live server did not become ready")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """Current value of a Prometheus sample in the default registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def reference_rows(model_dir: Path, n: int) -> np.ndarray:
    """The first ``n`` rows of the reference sample (real in-distribution feature vectors)."""
    return np.load(model_dir / "reference.npy")[:n]


def sample_of(url: str, name: str) -> float:
    """A sample without labels from a served runtime's /metrics (0 when absent)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for metric in family.samples:
            if metric.name == name and not metric.labels:
                return float(metric.value)
    return 0.0

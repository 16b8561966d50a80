"""The floor and the runtime as app factories, for Granian (``--interface asgi --factory``).

Same apps and settings as under uvicorn (``bench/runtime_floor.py``, ``aiops-runtime serve``);
only the ASGI server differs. The settings come from the environment (MODEL_DIR, DRIFT_ENABLED).

    granian --interface asgi --factory runtime_granian_apps:runtime_app --port 8006
"""

from __future__ import annotations

from fastapi import FastAPI
from runtime_floor import create_floor_app

from aiops_runtime.app import create_app
from aiops_runtime.logs import configure_logging
from aiops_runtime.settings import RuntimeSettings


def floor_app() -> FastAPI:
    """The benchmark's floor app."""
    return create_floor_app(RuntimeSettings())


def runtime_app() -> FastAPI:
    """The runtime's app, logging as ``aiops-runtime serve`` does."""
    settings = RuntimeSettings()
    configure_logging(settings.log_level, settings.model_name)
    return create_app(settings)

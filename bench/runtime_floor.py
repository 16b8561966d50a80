"""The benchmark's floor: the runtime's HTTP stack and validation with a constant answer.

Same FastAPI/uvicorn (uvloop, httptools) setup, same content-type, size and body checks and the
same response encoding as ``aiops-runtime serve``; no model, batcher, metrics or drift. The
runtime's throughput is compared with this server's.

    python bench/runtime_floor.py --port 8001
"""

from __future__ import annotations

import argparse
import contextlib
import gc
from collections.abc import AsyncIterator

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response
from threadpoolctl import threadpool_limits

from aiops_runtime.cli import server_options
from aiops_runtime.errors import RequestError, error_response
from aiops_runtime.http_io import encode_prediction, new_request_id, read_predict_rows
from aiops_runtime.settings import RuntimeSettings

CLASSES = ["benign", "malignant"]


def create_floor_app(settings: RuntimeSettings, n_features: int = 30) -> FastAPI:
    """A FastAPI app whose /predict validates like the runtime and answers a constant."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The same process tuning as the runtime, so the comparison is about the request path.
        threadpool_limits(limits=settings.blas_threads, user_api="blas")
        gc.collect()
        gc.freeze()
        yield

    app = FastAPI(title="floor", lifespan=lifespan)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        request_id = new_request_id()
        try:
            rows = await read_predict_rows(request, settings, n_features)
        except RequestError as exc:
            return error_response(exc, request_id)
        proba = np.full((len(rows), 2), 0.5)
        return Response(
            encode_prediction(request_id, settings, CLASSES, proba),
            media_type="application/json",
            headers={"x-request-id": request_id},
        )

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main() -> None:
    """Serve the floor app on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(
        create_floor_app(RuntimeSettings()),
        host="127.0.0.1",
        port=args.port,
        **server_options(RuntimeSettings()),
    )


if __name__ == "__main__":
    main()

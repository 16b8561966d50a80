"""What the runtime agrees to load: verified digests, its own trusted types, pickle only by opt-in,
artifacts over real HTTP with a timeout."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import SVC

from aiops_runtime.model_store import ArtifactError, load_artifacts
from aiops_runtime.settings import RuntimeSettings
from tests.runtime.runtime_helpers import RUNBOOK_FEATURES, app_client, manifest, sample


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def uri_settings(model: Path, reference: Path | None = None, **extra: Any) -> RuntimeSettings:
    """Settings naming artifacts by file:// URI with their true digests."""
    fields: dict[str, Any] = {"model_uri": model.as_uri(), "model_sha256": digest(model)}
    if reference is not None:
        fields |= {"reference_uri": reference.as_uri(), "reference_sha256": digest(reference)}
    return RuntimeSettings(drift_enabled=False, log_summary_interval_s=0, **(fields | extra))


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_model_dir_loads_model_and_reference(example_model_dir: Path) -> None:
    loaded = load_artifacts(RuntimeSettings(model_dir=example_model_dir))
    assert loaded.model.n_features == 30
    assert loaded.model.classes == ["benign", "malignant"]
    assert loaded.model.sha256 == manifest(example_model_dir)["model"]["sha256"]
    assert loaded.reference is not None
    assert loaded.reference.shape == (284, 30)


def test_a_relative_model_dir_is_taken_from_the_working_directory(
    example_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in `aiops-runtime serve --model-dir examples/models/breast-cancer` (docs/runtime.md)."""
    monkeypatch.chdir(example_model_dir.parent)
    loaded = load_artifacts(RuntimeSettings(model_dir=Path(example_model_dir.name)))
    assert loaded.model.uri == (example_model_dir / "model.skops").as_uri()


@pytest.mark.parametrize("artifact", ["model.skops", "reference.npy"])
def test_tampered_artifact_is_refused(model_copy: Path, artifact: str) -> None:
    flip_last_byte(model_copy / artifact)
    with pytest.raises(ArtifactError) as caught:
        load_artifacts(RuntimeSettings(model_dir=model_copy))
    assert caught.value.reason == "digest_mismatch"
    assert artifact in caught.value.message


def test_tampered_model_is_never_deserialized(model_copy: Path) -> None:
    # Garbage that would make skops itself fail: the digest check must come first.
    (model_copy / "model.skops").write_bytes(b"not a zip at all")
    with pytest.raises(ArtifactError) as caught:
        load_artifacts(RuntimeSettings(model_dir=model_copy))
    assert caught.value.reason == "digest_mismatch"


def test_env_digest_pins_the_manifest(example_model_dir: Path) -> None:
    with pytest.raises(ArtifactError) as caught:
        load_artifacts(RuntimeSettings(model_dir=example_model_dir, model_sha256="0" * 64))
    assert caught.value.reason == "digest_mismatch"


def test_model_uri_needs_a_digest(example_model_dir: Path) -> None:
    with pytest.raises(ArtifactError) as caught:
        load_artifacts(RuntimeSettings(model_uri=(example_model_dir / "model.skops").as_uri()))
    assert caught.value.reason == "missing_digest"


def test_model_uri_with_sha256_prefix_is_accepted(example_model_dir: Path) -> None:
    model = example_model_dir / "model.skops"
    settings = RuntimeSettings(model_uri=model.as_uri(), model_sha256=f"sha256:{digest(model)}")
    assert load_artifacts(settings).reference is None


def test_reference_with_wrong_shape_is_refused(tmp_path: Path, example_model_dir: Path) -> None:
    reference = tmp_path / "reference.npy"
    np.save(reference, np.zeros((10, 29)))
    with pytest.raises(ArtifactError) as caught:
        load_artifacts(uri_settings(example_model_dir / "model.skops", reference))
    assert caught.value.reason == "invalid_reference"


def _fit(estimator: Any) -> Any:
    x, y = load_breast_cancer(return_X_y=True)
    return estimator.fit(x, y)


@pytest.mark.parametrize(
    "estimator",
    [
        pytest.param(SVC(random_state=0), id="svc-not-on-the-list"),
        pytest.param(
            Pipeline([("log", FunctionTransformer(np.log1p)), ("svc", SVC())]),
            id="function-transformer",
        ),
    ],
)
def test_skops_types_outside_the_runtime_list_are_refused(tmp_path: Path, estimator: Any) -> None:
    # skops itself trusts these scikit-learn types by default; the runtime's own list does not.
    model = tmp_path / "model.skops"
    sio.dump(_fit(estimator), model)
    with pytest.raises(ArtifactError) as caught:
        load_artifacts(uri_settings(model))
    assert caught.value.reason == "untrusted_type"
    assert "sklearn.svm._classes.SVC" in caught.value.message


def test_trusted_forest_loads(tmp_path: Path) -> None:
    model = tmp_path / "model.skops"
    sio.dump(_fit(RandomForestClassifier(n_estimators=3, random_state=0)), model)
    assert load_artifacts(uri_settings(model)).model.n_features == 30


def test_joblib_needs_the_explicit_opt_in(tmp_path: Path) -> None:
    model = tmp_path / "model.joblib"
    joblib.dump(_fit(RandomForestClassifier(n_estimators=3, random_state=0)), model)
    with pytest.raises(ArtifactError) as caught:
        load_artifacts(uri_settings(model, model_format="joblib"))
    assert caught.value.reason == "pickle_not_allowed"
    allowed = uri_settings(model, model_format="joblib", model_allow_pickle=True)
    assert load_artifacts(allowed).model.classes == ["0", "1"]


class _ArtifactHandler(http.server.SimpleHTTPRequestHandler):
    delay_s = 0.0

    def do_GET(self) -> None:
        time.sleep(self.delay_s)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_artifacts(example_model_dir: Path) -> Iterator[Callable[[float], str]]:
    """Serve the trained artifacts over real HTTP on 127.0.0.1; call with a response delay."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(delay_s: float) -> str:
        handler = type("Handler", (_ArtifactHandler,), {"delay_s": delay_s})

        def factory(*args: Any) -> _ArtifactHandler:
            return handler(*args, directory=str(example_model_dir))

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_artifacts_are_fetched_over_http(
    http_artifacts: Callable[[float], str], example_model_dir: Path
) -> None:
    base = http_artifacts(0.0)
    files = manifest(example_model_dir)
    settings = RuntimeSettings(
        model_uri=f"{base}/model.skops",
        model_sha256=files["model"]["sha256"],
        reference_uri=f"{base}/reference.npy",
        reference_sha256=files["reference"]["sha256"],
    )
    loaded = load_artifacts(settings)
    assert loaded.model.uri.startswith("http://127.0.0.1:")
    assert loaded.reference is not None


def test_slow_http_artifact_times_out(
    http_artifacts: Callable[[float], str], example_model_dir: Path
) -> None:
    base = http_artifacts(3.0)
    settings = RuntimeSettings(
        model_uri=f"{base}/model.skops",
        model_sha256=manifest(example_model_dir)["model"]["sha256"],
        download_timeout_s=0.3,
    )
    started = time.monotonic()
    with pytest.raises(ArtifactError) as caught:
        load_artifacts(settings)
    assert caught.value.reason == "fetch_failed"
    assert "timed out" in caught.value.message
    assert time.monotonic() - started < 3.0


def test_missing_http_artifact_is_a_fetch_failure(http_artifacts: Callable[[float], str]) -> None:
    settings = RuntimeSettings(
        model_uri=f"{http_artifacts(0.0)}/absent.skops", model_sha256="0" * 64
    )
    with pytest.raises(ArtifactError) as caught:
        load_artifacts(settings)
    assert caught.value.reason == "fetch_failed"


@pytest.mark.anyio
async def test_runtime_with_tampered_model_stays_not_ready(
    model_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from aiops_runtime.logs import configure_logging

    flip_last_byte(model_copy / "model.skops")
    stream = io.StringIO()
    configure_logging("INFO", "tampered", stream)
    try:
        settings = RuntimeSettings(model_dir=model_copy, log_summary_interval_s=0)
        async with app_client(settings) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["reason"] == "digest_mismatch"
            assert (await client.get("/healthz")).status_code == 200
            refused = await client.post("/predict", json={"features": RUNBOOK_FEATURES})
            assert refused.status_code == 503
            drift = await client.get("/drift")
            # No model is not "drift disabled": /drift says why there is none.
            assert drift.status_code == 503
            assert drift.json()["ready"] is False
            assert drift.json()["reason"] == "digest_mismatch"
            assert sample("model_ready") == 0
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["reason"] == "digest_mismatch"
    assert "model.skops" in errors[0]["message"]
    assert errors[0]["model"] == "tampered"

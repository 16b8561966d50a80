"""Model and reference artifacts: fetch, verify the sha256 digest, then deserialize.

Order matters for safety: bytes are fetched completely, their digest is compared with the expected
one, and only then are they parsed. skops archives are audited against ``TRUSTED_TYPES``, a list
this module owns (never the list recorded in the artifact). joblib/pickle artifacts execute code
when loaded and are refused unless ``MODEL_ALLOW_PICKLE`` is true.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiops_runtime.settings import RuntimeSettings

log = logging.getLogger("aiops_runtime.model_store")

# Every (module, class) a skops archive may contain. Built-in containers and scalars, NumPy arrays,
# and the scikit-learn estimators the runtime is meant to serve; anything else is refused.
TRUSTED_TYPES: list[str] = [
    "builtins.dict",
    "builtins.list",
    "builtins.tuple",
    "builtins.str",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "builtins.NoneType",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.float64",
    "numpy.float32",
    "numpy.int64",
    "numpy.int32",
    "numpy.intp",
    "numpy.bool_",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
]
_TRUSTED_SET = frozenset(TRUSTED_TYPES)


class ArtifactError(Exception):
    """An artifact could not be fetched, verified or loaded; ``reason`` is a stable short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ArtifactSource:
    """Where an artifact lives and the sha256 it must have."""

    uri: str
    sha256: str


@dataclass(frozen=True)
class ModelPlan:
    """What to load, resolved from the settings (and a training manifest when MODEL_DIR is set)."""

    model: ArtifactSource
    model_format: str
    reference: ArtifactSource | None


@dataclass(frozen=True)
class LoadedModel:
    """A verified, deserialized model with what the request path needs to know about it."""

    estimator: Any
    n_features: int
    classes: list[str]
    sha256: str
    model_format: str
    uri: str


@dataclass(frozen=True)
class LoadedArtifacts:
    """The model and, when configured, the drift reference sample."""

    model: LoadedModel
    reference: np.ndarray | None


def fetch_bytes(uri: str, timeout_s: float) -> bytes:
    """Read a file:// or http(s):// URI (or a plain path) completely into memory."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri, timeout=timeout_s) as resp:
                return bytes(resp.read())
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ArtifactError("fetch_failed", f"cannot fetch {uri}: {exc}") from exc
    if parsed.scheme in ("file", ""):
        path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme else uri)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ArtifactError("fetch_failed", f"cannot read {uri}: {exc.strerror}") from exc
    raise ArtifactError("unsupported_uri", f"unsupported URI scheme {parsed.scheme!r} in {uri}")


def verify_digest(data: bytes, expected: str, uri: str) -> str:
    """Return the sha256 of ``data``; raise ArtifactError when it differs from ``expected``."""
    actual = hashlib.sha256(data).hexdigest()
    wanted = expected.strip().lower().removeprefix("sha256:")
    if not hmac.compare_digest(actual, wanted):
        raise ArtifactError(
            "digest_mismatch", f"sha256 of {uri} is {actual}, expected {wanted}; refusing to load"
        )
    return actual


def skops_types(data: bytes) -> set[str]:
    """Every ``module.Class`` named in a skops archive's schema."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ArtifactError("invalid_model", f"not a skops archive: {exc}") from exc
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("__module__"), str) and isinstance(node.get("__class__"), str):
                found.add(f"{node['__module__']}.{node['__class__']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def deserialize_model(data: bytes, model_format: str, allow_pickle: bool) -> Any:
    """Turn verified bytes into an estimator (skops with our trusted list, or opt-in joblib)."""
    if model_format == "skops":
        untrusted = sorted(skops_types(data) - _TRUSTED_SET)
        if untrusted:
            raise ArtifactError(
                "untrusted_type", f"model contains types outside the runtime's list: {untrusted}"
            )
        import skops.io as sio

        try:
            return sio.loads(data, trusted=TRUSTED_TYPES)
        except Exception as exc:  # skops raises many types for a malformed archive
            raise ArtifactError("invalid_model", f"cannot load skops model: {exc}") from exc
    if model_format == "joblib":
        if not allow_pickle:
            raise ArtifactError(
                "pickle_not_allowed",
                "joblib artifacts execute code when loaded; set MODEL_ALLOW_PICKLE=true to allow",
            )
        import joblib

        return joblib.load(io.BytesIO(data))
    raise ArtifactError("invalid_format", f"unknown model format {model_format!r}")


def describe_model(estimator: Any, sha256: str, model_format: str, uri: str) -> LoadedModel:
    """Check the estimator can serve /predict and record its feature count and classes."""
    if not callable(getattr(estimator, "predict_proba", None)):
        raise ArtifactError("invalid_model", "the model has no predict_proba method")
    n_features = getattr(estimator, "n_features_in_", None)
    classes = getattr(estimator, "classes_", None)
    if not isinstance(n_features, int | np.integer) or classes is None:
        raise ArtifactError("invalid_model", "the model is not fitted (no n_features_in_/classes_)")
    return LoadedModel(
        estimator=estimator,
        n_features=int(n_features),
        classes=[str(c) for c in classes],
        sha256=sha256,
        model_format=model_format,
        uri=uri,
    )


def parse_reference(data: bytes, n_features: int) -> np.ndarray:
    """Load a verified .npy reference sample as float64 with shape (rows, n_features)."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise ArtifactError("invalid_reference", f"reference is not a plain .npy: {exc}") from exc
    if array.ndim != 2 or array.shape[1] != n_features or array.shape[0] < 2:
        raise ArtifactError(
            "invalid_reference",
            f"reference has shape {array.shape}, expected (rows >= 2, {n_features})",
        )
    array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ArtifactError("invalid_reference", "reference contains non-finite values")
    return array


def _manifest_plan(settings: RuntimeSettings, model_dir: Path) -> ModelPlan:
    try:
        manifest = json.loads((model_dir / "manifest.json").read_text())
        model = manifest["model"]
        source = ArtifactSource((model_dir / model["file"]).as_uri(), model["sha256"])
        fmt = model.get("format", "skops")
        ref = manifest.get("reference")
        reference = (
            ArtifactSource((model_dir / ref["file"]).as_uri(), ref["sha256"]) if ref else None
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(
            "invalid_manifest", f"cannot use {model_dir}/manifest.json: {exc!r}"
        ) from exc
    # A digest given in the environment pins the manifest too (the manifest is not signed).
    if settings.model_sha256 and settings.model_sha256.lower() != source.sha256.lower():
        raise ArtifactError(
            "digest_mismatch",
            f"MODEL_SHA256 {settings.model_sha256} differs from the manifest's {source.sha256}",
        )
    return ModelPlan(model=source, model_format=fmt, reference=reference)


def plan_from_settings(settings: RuntimeSettings) -> ModelPlan:
    """Resolve which model and reference to load from MODEL_DIR or MODEL_URI/REFERENCE_URI."""
    if settings.model_dir is not None:
        return _manifest_plan(settings, Path(settings.model_dir))
    if not settings.model_uri:
        raise ArtifactError("no_model", "no model configured: set MODEL_DIR or MODEL_URI")
    if not settings.model_sha256:
        raise ArtifactError("missing_digest", "MODEL_SHA256 is required with MODEL_URI")
    reference = None
    if settings.reference_uri:
        if not settings.reference_sha256:
            raise ArtifactError("missing_digest", "REFERENCE_SHA256 is required with REFERENCE_URI")
        reference = ArtifactSource(settings.reference_uri, settings.reference_sha256)
    return ModelPlan(
        model=ArtifactSource(settings.model_uri, settings.model_sha256),
        model_format=settings.model_format,
        reference=reference,
    )


def load_artifacts(settings: RuntimeSettings) -> LoadedArtifacts:
    """Fetch, verify and load the configured model and reference (blocking; run off the loop)."""
    plan = plan_from_settings(settings)
    timeout = settings.download_timeout_s
    model_bytes = fetch_bytes(plan.model.uri, timeout)
    digest = verify_digest(model_bytes, plan.model.sha256, plan.model.uri)
    reference_bytes = None
    if plan.reference is not None:
        reference_bytes = fetch_bytes(plan.reference.uri, timeout)
        verify_digest(reference_bytes, plan.reference.sha256, plan.reference.uri)
    estimator = deserialize_model(model_bytes, plan.model_format, settings.model_allow_pickle)
    model = describe_model(estimator, digest, plan.model_format, plan.model.uri)
    reference = None
    if reference_bytes is not None:
        reference = parse_reference(reference_bytes, model.n_features)
    return LoadedArtifacts(model=model, reference=reference)

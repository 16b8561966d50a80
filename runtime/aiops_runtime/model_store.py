"""Model and reference artifacts: fetch, verify the sha256 digest, then deserialize.

Order matters for safety: bytes are fetched completely, their digest is compared with the expected
one, and only then are they parsed. skops archives are audited against ``TRUSTED_TYPES``, a list
this module owns (never the list recorded in the artifact). joblib/pickle artifacts execute code
when loaded and are refused unless ``MODEL_ALLOW_PICKLE`` is true.

Downloads are bounded: at most ``MODEL_MAX_BYTES`` / ``REFERENCE_MAX_BYTES`` (a larger
Content-Length is refused before reading), all of them under one total deadline
(``DOWNLOAD_TIMEOUT_S``), hashed while they stream. A redirect may not change the scheme
(https to http would expose the body and the credentials), and the Authorization header
(``MODEL_AUTHORIZATION``, from a Secret) is not sent to another host. URIs are shown only
redacted (``redact_uri``: no credentials, no query, no fragment) in every message and log line:
presigned URLs carry their signature in the query.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiops_runtime.calibration import Calibration, from_json
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
    feature_names: list[str] | None = None
    calibration: ArtifactSource | None = None


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
    feature_names: list[str] | None = None  # from the training manifest; None for old artifacts
    calibration: Calibration | None = None  # the drift calibration (calibration.json), if any


CHUNK = 1024 * 1024
STALL_S = 10.0  # longest wait for the next bytes of a download (and to connect)


def redact_uri(uri: str) -> str:
    """`uri` without userinfo, query and fragment: what messages and logs may show."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.scheme:
        return uri
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    hidden = " [query hidden]" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{hidden}"


class _SameSchemeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only within one scheme; drop Authorization when the host changes."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if new.scheme != old.scheme:
            raise ArtifactError(
                "fetch_failed",
                f"{redact_uri(req.full_url)} redirects from {old.scheme} to {new.scheme};"
                " refusing to follow",
            )
        redirected = super().redirect_request(req, fp, code, msg, headers, newurl)
        if redirected is not None and new.hostname != old.hostname:
            redirected.remove_header("Authorization")
        return redirected


_OPENER = urllib.request.build_opener(_SameSchemeRedirects)


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self, uri: str) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise ArtifactError(
                "fetch_failed",
                f"downloading {redact_uri(uri)} took longer than {self.seconds:g}s"
                " (DOWNLOAD_TIMEOUT_S, for all artifacts together)",
            )
        return remaining


def _http_chunks(
    uri: str, deadline: _Deadline, max_bytes: int, authorization: str
) -> Iterator[bytes]:
    headers = {"Authorization": authorization} if authorization else {}
    request = urllib.request.Request(uri, headers=headers)
    try:
        with _OPENER.open(request, timeout=min(STALL_S, deadline.left(uri))) as resp:
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ArtifactError(
                    "too_large",
                    f"{redact_uri(uri)} is {declared} bytes, more than the {max_bytes} allowed",
                )
            # read1: at most one socket read (each within STALL_S), so the deadline is checked
            # between reads however slowly the server drips its bytes.
            while chunk := resp.read1(CHUNK):
                deadline.left(uri)
                yield chunk
    except ArtifactError:
        raise
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "code", None) or exc
        raise ArtifactError(
            "fetch_failed", f"cannot fetch {redact_uri(uri)}: {_no_uri(reason, uri)}"
        ) from None


def _no_uri(reason: Any, uri: str) -> str:
    """An error text with the full URI (and its credentials or query) taken out."""
    return str(reason).replace(uri, redact_uri(uri))


def _file_chunks(uri: str, deadline: _Deadline, max_bytes: int) -> Iterator[bytes]:
    parsed = urllib.parse.urlsplit(uri)
    path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme else uri)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ArtifactError(
                "too_large", f"{uri} is {size} bytes, more than the {max_bytes} allowed"
            )
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                deadline.left(uri)
                yield chunk
    except OSError as exc:
        raise ArtifactError("fetch_failed", f"cannot read {uri}: {exc.strerror}") from None


def fetch_verified(
    source: ArtifactSource, deadline: _Deadline, max_bytes: int, authorization: str = ""
) -> tuple[bytes, str]:
    """Stream `source` (file://, a plain path or http(s)://) into memory while hashing it; raise
    ArtifactError past `max_bytes`, past the deadline, or when the digest is not the expected
    one. Returns the bytes and their sha256."""
    scheme = urllib.parse.urlsplit(source.uri).scheme
    if scheme in ("http", "https"):
        chunks = _http_chunks(source.uri, deadline, max_bytes, authorization)
    elif scheme in ("file", ""):
        chunks = _file_chunks(source.uri, deadline, max_bytes)
    else:
        raise ArtifactError(
            "unsupported_uri",
            f"unsupported URI scheme {scheme!r} in {redact_uri(source.uri)}",
        )
    digest, body = hashlib.sha256(), bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise ArtifactError(
                "too_large",
                f"{redact_uri(source.uri)} is longer than the {max_bytes} bytes allowed",
            )
        digest.update(chunk)
    actual = digest.hexdigest()
    _check_digest(actual, source)
    return bytes(body), actual


def _check_digest(actual: str, source: ArtifactSource) -> None:
    wanted = source.sha256.strip().lower().removeprefix("sha256:")
    if not hmac.compare_digest(actual, wanted):
        raise ArtifactError(
            "digest_mismatch",
            f"sha256 of {redact_uri(source.uri)} is {actual}, expected {wanted}; refusing to load",
        )


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


def parse_reference(data: bytes, n_features: int, max_rows: int) -> np.ndarray:
    """Load a verified .npy reference sample as float64 with shape (rows, n_features).

    The header is read first: a wrong shape or dtype is refused before any array is built. A
    sample longer than `max_rows` is cut to `max_rows` rows drawn with a fixed seed (the
    detectors' memory grows with the square of the rows), and the runtime says so in its log.
    """
    from numpy.lib import format as npy

    stream = io.BytesIO(data)
    try:
        version = npy.read_magic(stream)
        read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _fortran, dtype = read_header(stream)
    except ValueError as exc:
        raise ArtifactError("invalid_reference", f"reference is not a plain .npy: {exc}") from None
    if len(shape) != 2 or shape[1] != n_features or shape[0] < 2:
        raise ArtifactError(
            "invalid_reference", f"reference has shape {shape}, expected (rows >= 2, {n_features})"
        )
    if dtype.kind not in "fiu":
        raise ArtifactError("invalid_reference", f"reference dtype {dtype} is not numeric")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise ArtifactError("invalid_reference", f"reference is not a plain .npy: {exc}") from exc
    if array.shape[0] > max_rows:
        rows = np.sort(np.random.default_rng(0).choice(array.shape[0], max_rows, replace=False))
        log.warning(
            "reference sample cut to REFERENCE_MAX_ROWS rows",
            extra={"rows": int(array.shape[0]), "kept": max_rows, "seed": 0},
        )
        array = array[rows]
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
        cal = manifest.get("calibration")
        calibration = (
            ArtifactSource((model_dir / cal["file"]).as_uri(), cal["sha256"]) if cal else None
        )
        names = manifest.get("feature_names")
        feature_names = [str(n) for n in names] if isinstance(names, list) else None
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
    return ModelPlan(
        model=source,
        model_format=fmt,
        reference=reference,
        feature_names=feature_names,
        calibration=calibration,
    )


def plan_from_settings(settings: RuntimeSettings) -> ModelPlan:
    """Resolve which model and reference to load from MODEL_DIR or MODEL_URI/REFERENCE_URI."""
    if settings.model_dir is not None:
        return _manifest_plan(settings, Path(settings.model_dir).absolute())
    if not settings.model_uri:
        raise ArtifactError("no_model", "no model configured: set MODEL_DIR or MODEL_URI")
    if not settings.model_sha256:
        raise ArtifactError("missing_digest", "MODEL_SHA256 is required with MODEL_URI")
    reference = None
    if settings.reference_uri:
        if not settings.reference_sha256:
            raise ArtifactError("missing_digest", "REFERENCE_SHA256 is required with REFERENCE_URI")
        reference = ArtifactSource(settings.reference_uri, settings.reference_sha256)
    calibration = None
    if settings.calibration_uri:
        if not settings.calibration_sha256:
            raise ArtifactError(
                "missing_digest", "CALIBRATION_SHA256 is required with CALIBRATION_URI"
            )
        calibration = ArtifactSource(settings.calibration_uri, settings.calibration_sha256)
    return ModelPlan(
        model=ArtifactSource(settings.model_uri, settings.model_sha256),
        model_format=settings.model_format,
        reference=reference,
        calibration=calibration,
    )


def load_artifacts(settings: RuntimeSettings) -> LoadedArtifacts:
    """Fetch, verify and load the configured model and reference (blocking; run off the loop)."""
    plan = plan_from_settings(settings)
    deadline = _Deadline(settings.download_timeout_s)
    auth = settings.model_authorization
    model_bytes, digest = fetch_verified(plan.model, deadline, settings.model_max_bytes, auth)
    reference_bytes = None
    if plan.reference is not None:
        reference_bytes, _ = fetch_verified(
            plan.reference, deadline, settings.reference_max_bytes, auth
        )
    estimator = deserialize_model(model_bytes, plan.model_format, settings.model_allow_pickle)
    model = describe_model(estimator, digest, plan.model_format, redact_uri(plan.model.uri))
    reference = None
    if reference_bytes is not None:
        reference = parse_reference(reference_bytes, model.n_features, settings.reference_max_rows)
    return LoadedArtifacts(
        model=model,
        reference=reference,
        feature_names=plan.feature_names,
        calibration=_load_calibration(plan, deadline, settings),
    )


def _load_calibration(
    plan: ModelPlan, deadline: _Deadline, settings: RuntimeSettings
) -> Calibration | None:
    """Fetch, verify and parse the calibration; a bad one is refused like a bad reference."""
    if plan.calibration is None:
        return None
    data, _ = fetch_verified(
        plan.calibration, deadline, settings.reference_max_bytes, settings.model_authorization
    )
    try:
        return from_json(data)
    except ValueError as exc:
        raise ArtifactError("invalid_calibration", f"calibration refused: {exc}") from None

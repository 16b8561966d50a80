"""Every setting the runtime reads, with its type, default and a one-line description.

Environment variables carry no prefix so the seed runbook's names (``DRIFT_P_THRESHOLD``) keep
working. The settings table of docs/runtime.md is checked against this module by a test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

Detector = Literal["mmd", "ks"]
# What a check tests: the request rows, the model's predicted class probabilities, or both.
DriftTarget = Literal["inputs", "outputs", "both"]
# One false drift event a week at 100 req/s: 100 x 86,400 x 7 rows.
DEFAULT_FALSE_ALARM_ROWS = 60_480_000
# Below this the budget means a false event every few minutes at 100 req/s: a typo, not a wish.
MIN_FALSE_ALARM_ROWS = 10_000
Engine = Literal["native", "alibi"]
ModelFormat = Literal["skops", "joblib"]
AccessLog = Literal["off", "errors", "all"]


class DriftConfig(BaseModel):
    """Drift settings that may change while the runtime runs (the mounted ConfigMap's file).

    Field aliases are the ModelService's ``spec.drift`` names, so the operator can write the
    file straight from the spec.
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    # Absent means inputs: what a drift ConfigMap written before drift.target existed meant. The
    # ModelService (spec.drift.target) and a standalone runtime (DRIFT_TARGET) default to both.
    target: DriftTarget = Field(
        "inputs",
        description="What each check tests: the inputs, the model's outputs, or both.",
    )
    detector: Detector = Field("mmd", description="Statistical test run on each window.")
    engine: Engine = Field("native", description="Implementation of the mmd test.")
    p_value_threshold: float = Field(
        0.05, gt=0, lt=1, alias="pValueThreshold", description="Drift when p-value < this."
    )
    # Defaults from `make bench-drift`: tumbling windows of 100 rows make successive checks
    # independent, so 4 flags in a row happen by chance about (1-f) f^4 per check (f ~ 0.04):
    # under one false event a day at 100 req/s, with a detection delay of about 400 rows.
    window_size: int = Field(
        100, ge=10, le=100_000, alias="windowSize", description="Rows in each tested window."
    )
    check_every: int = Field(
        100, ge=1, le=100_000, alias="checkEvery", description="New rows between two checks."
    )
    consecutive: int = Field(
        4, ge=1, le=100, description="Flagged checks in a row that raise one drift event."
    )
    permutations: int = Field(
        100, ge=10, le=10_000, description="Permutations of the mmd test's p-value."
    )
    # About one false event a week at 100 req/s; used when a calibration covers the settings.
    false_alarm_rows: int = Field(
        DEFAULT_FALSE_ALARM_ROWS,
        ge=MIN_FALSE_ALARM_ROWS,
        le=10**12,
        alias="falseAlarmRows",
        description="Expected rows between false drift events (calibrated rule).",
    )


class RuntimeSettings(BaseSettings):
    """The runtime's configuration, read from the environment (and CLI flags that override it)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    host: str = Field("0.0.0.0", description="Address the HTTP server binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port the HTTP server listens on.")
    log_level: str = Field("INFO", description="Minimum level of the JSON log lines.")

    model_name: str = Field("model", description="Name shown in logs, metrics and /drift.")
    model_version: str = Field("", description="Version label of the served model (free text).")
    model_dir: Path | None = Field(
        None, description="Directory written by `aiops-runtime train` (uses its manifest.json)."
    )
    model_uri: str = Field(
        "", description="Model artifact: file://, http:// or https:// (ignored with MODEL_DIR)."
    )
    model_sha256: str = Field("", description="Expected sha256 of the model artifact (hex).")
    model_format: ModelFormat = Field(
        "skops", description="skops (safe) or joblib (executes code on load; needs opt-in)."
    )
    model_allow_pickle: bool = Field(
        False, description="Allow joblib/pickle artifacts. They execute code when loaded."
    )
    reference_uri: str = Field("", description="Reference sample (.npy) for drift detection.")
    reference_sha256: str = Field("", description="Expected sha256 of the reference sample.")
    calibration_uri: str = Field(
        "", description="Drift calibration (calibration.json of `aiops-runtime train`)."
    )
    calibration_sha256: str = Field("", description="Expected sha256 of the calibration.")
    download_timeout_s: float = Field(
        120.0, gt=0, description="Deadline for fetching the model and reference, together."
    )
    model_max_bytes: int = Field(
        1024 * 1024 * 1024, ge=1, description="Largest model artifact fetched, in bytes."
    )
    reference_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="Largest reference sample fetched, in bytes."
    )
    reference_max_rows: int = Field(
        2000,
        ge=2,
        description="Most reference rows kept (more are sampled with seed 0): detector memory"
        " grows with the square of the rows.",
    )
    model_authorization: str = Field(
        "",
        repr=False,
        description="Authorization header sent with http(s) artifact downloads (from a Secret;"
        " never to another host on a redirect).",
    )

    api_docs: bool = Field(
        False, description="Serve /docs, /redoc and /openapi.json (off: nobody is shown the API)."
    )
    request_read_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest a client may take to send one whole request; slower ones are cut.",
    )
    max_concurrency: int = Field(
        1000,
        ge=0,
        description="Most connections and requests at once; past it new ones get 503 (0: none).",
    )
    max_batch_size: int = Field(
        1000, ge=1, le=100_000, description="Most rows one /predict or OIP infer request may carry."
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest accepted request body, in bytes."
    )
    body_drain_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Most bytes past MAX_BODY_BYTES discarded before a 413 (0 turns it off).",
    )
    body_drain_timeout_s: float = Field(
        5.0, ge=0, description="Most seconds spent discarding an oversized body before its 413."
    )
    batch_max_wait_ms: float = Field(
        2.0, ge=0, le=100, description="Longest a request waits to be scored with others."
    )
    batch_max_rows: int = Field(
        1024, ge=1, le=100_000, description="Most rows scored together in one model call."
    )
    drift_worker_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Niceness of the drift worker thread: under full CPU, requests go first.",
    )
    blas_threads: int = Field(
        1,
        ge=0,
        description="NumPy BLAS threads (0 keeps the library default); 1 spares the event loop.",
    )
    batch_direct_below_us: float = Field(
        50.0,
        ge=0,
        description="Model calls faster than this (µs) skip batching when nothing is queued.",
    )
    fast_linear_scorer: bool = Field(
        True,
        description="Score scaler+logistic models with one NumPy expression (checked at load).",
    )
    batch_score_in_thread: bool = Field(
        False, description="Score batches in a worker thread instead of on the event loop."
    )
    access_log: AccessLog = Field(
        "errors", description="Per-request log lines: off, errors (4xx/5xx) or all (costly)."
    )
    log_summary_interval_s: float = Field(
        60.0, ge=0, description="Seconds between request summary log lines (0 turns them off)."
    )

    drift_enabled: bool = Field(True, description="Run drift detection in the background.")
    drift_target: DriftTarget = Field(
        "both", description="Initial drift target: inputs, outputs (predictions) or both."
    )
    drift_detector: Detector = Field("mmd", description="Initial drift test (see DriftConfig).")
    drift_engine: Engine = Field(
        "native", description="mmd implementation: native (NumPy) or alibi (alibi-detect)."
    )
    drift_p_threshold: float = Field(
        0.05,
        gt=0,
        lt=1,
        validation_alias=AliasChoices("DRIFT_P_THRESHOLD", "drift_p_threshold"),
        description="Initial p-value threshold (the seed runbook's name).",
    )
    drift_window_size: int = Field(100, ge=10, description="Initial rows per tested window.")
    drift_check_every: int = Field(100, ge=1, description="Initial new rows between checks.")
    drift_consecutive: int = Field(4, ge=1, description="Initial flagged checks per event.")
    drift_permutations: int = Field(100, ge=10, description="Permutations of the mmd test.")
    drift_false_alarm_rows: int = Field(
        DEFAULT_FALSE_ALARM_ROWS,
        ge=MIN_FALSE_ALARM_ROWS,
        description="Initial expected rows between false drift events (with a calibration).",
    )
    drift_config_file: Path | None = Field(
        None, description="JSON file with live drift settings (a mounted ConfigMap); reloaded."
    )
    drift_reload_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often the drift config file is checked for changes."
    )

    def initial_drift_config(self) -> DriftConfig:
        """The drift settings given by the environment, before any config file is read."""
        return DriftConfig(
            target=self.drift_target,
            detector=self.drift_detector,
            engine=self.drift_engine,
            p_value_threshold=self.drift_p_threshold,
            window_size=self.drift_window_size,
            check_every=self.drift_check_every,
            consecutive=self.drift_consecutive,
            permutations=self.drift_permutations,
            false_alarm_rows=self.drift_false_alarm_rows,
        )


def env_var_name(name: str, field: FieldInfo) -> str:
    """The environment variable a RuntimeSettings field is read from."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0].upper()
    return name.upper()


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " \\| ".join(str(arg) for arg in get_args(annotation))
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if args:
        return " \\| ".join(_type_name(arg) for arg in args)
    return {Path: "path"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default_text(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    if default is None or default == "":
        return "(unset)"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def settings_markdown() -> str:
    """The settings table of docs/runtime.md (env var, type, default, description), a row per
    field."""
    lines = ["| Env var | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for name, field in RuntimeSettings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        lines.append(
            f"| `{env_var_name(name, field)}` | {_type_name(field.annotation)} "
            f"| `{_default_text(field)}` | {description} |"
        )
    return "\n".join(lines) + "\n"

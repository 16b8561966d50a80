"""Prometheus metrics of the runtime. Names of the seed runbook are kept as they were."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

PREDICTIONS = Counter(
    "model_predictions_total", "Rows scored by the model (one per row, batched or not)."
)
DRIFT_EVENTS = Counter(
    "model_drift_events_total", "Drift events raised (after the consecutive-checks policy)."
)
REQUEST_LATENCY = Histogram(
    "model_request_latency_seconds",
    "Latency of inference requests (/predict and OIP infer), from receipt to response.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
REQUEST_ERRORS = Counter(
    "model_request_errors_total", "Requests answered with an error, by reason.", ["reason"]
)
BATCH_SIZE = Histogram(
    "model_batch_size_rows",
    "Rows scored together in one model call by the micro-batcher.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
DRIFT_P_VALUE = Gauge("model_drift_p_value", "p-value of the last drift check.")
DRIFT_THRESHOLD = Gauge("model_drift_p_value_threshold", "p-value threshold in force.")
DRIFT_CHECKS = Counter("model_drift_checks_total", "Drift checks run.", ["result"])
DRIFT_WINDOW_FILL = Gauge(
    "model_drift_window_fill", "Rows in the drift window (up to the window size)."
)
DRIFT_ACTIVE = Gauge("model_drift_active", "1 while a drift event is active, else 0.")
DRIFT_CHECK_DURATION = Histogram(
    "model_drift_check_duration_seconds",
    "Time one drift check takes in the background worker (never on the request path).",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
MODEL_INFO = Info("model", "The served model: name, version, sha256 digest, format.")
MODEL_READY = Gauge("model_ready", "1 when the model is loaded and its digests verified.")

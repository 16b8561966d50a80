"""The operator's log setup: Kopf's formatter, and for the text formats the fields JSON shows.

The operator's own log lines name their ModelService and the why in `extra` fields
(`namespace`, `modelservice`, `error`, ...), which the JSON format prints as keys. The plain and
full formats print only the message, so `ExtrasInText` writes those fields into it:
`[aiops-quality/breast-cancer] runtime drift state unreadable (error=...)`.
"""

from __future__ import annotations

import logging

import kopf

# Fields the operator's log lines carry beside namespace/modelservice, in the order shown.
DETAIL_FIELDS = ("child_kind", "action", "outcome", "error", "detail", "summary")


class ExtrasInText(logging.Filter):
    """Put a record's ModelService and detail fields into its message (text formats only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = getattr(record, "modelservice", None)
        if name is None or getattr(record, "_extras_in_text", False):
            return True
        namespace = getattr(record, "namespace", "")
        details = [f"{k}={getattr(record, k)}" for k in DETAIL_FIELDS if getattr(record, k, "")]
        suffix = f" ({', '.join(details)})" if details else ""
        record.msg = f"[{namespace}/{name}] {record.getMessage()}{suffix}"
        record.args = ()
        record._extras_in_text = True  # one record may pass several handlers
        return True


def configure(log_format: str, verbose: bool) -> None:
    """Kopf's logging in `log_format` (json, plain, anything else: full)."""
    kopf_format = {"json": kopf.LogFormat.JSON, "plain": kopf.LogFormat.PLAIN}.get(
        log_format, kopf.LogFormat.FULL
    )
    text = kopf_format is not kopf.LogFormat.JSON
    # log_prefix: Kopf's own per-object lines ("Handler 'reconcile' failed ...") name the
    # object in the text formats too (JSON has them under the key `object`).
    kopf.configure(verbose=verbose, log_format=kopf_format, log_prefix=text)
    if text:
        for handler in logging.getLogger().handlers:
            handler.addFilter(ExtrasInText())
    if not verbose:
        # Kopf logs "Handler ... succeeded" for every watch event of every child; keep its
        # per-object logs to warnings and errors, and the operator's own decisions at INFO.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)

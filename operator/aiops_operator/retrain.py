"""The retrain reaction: POST the CI pipeline trigger named by spec.drift.retrain.triggerSecretRef.

The Secret key holds one JSON object, e.g.
`{"url": "https://gitlab.example.com/api/v4/projects/42/trigger/pipeline", "token": "glptt-...",
"ref": "main"}` (`ref` defaults to main). The request is GitLab's pipeline trigger API: a form
with `token`, `ref` and `variables[...]` naming the ModelService, so the retrain job knows what to
retrain. The token is sent and nothing else: it never enters a message, a log line, an Event or
the status (every message passes through `redact`, and only the URL's scheme, host and path are
ever shown).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from aiops_operator.kube import ApiError, KubeClient, resource_path

DEFAULT_REF = "main"


class RetrainConfigError(Exception):
    """The trigger Secret is missing or unusable: a CamelCase reason and an actionable message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class TriggerTarget:
    """Where and how to trigger the pipeline; the token is kept out of repr()."""

    url: str
    token: str = field(repr=False)
    ref: str = DEFAULT_REF

    def safe_url(self) -> str:
        """The URL without credentials or query (tokens can hide in either)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True)
class TriggerOutcome:
    """The result of one trigger attempt: whether it worked and a message safe to publish."""

    ok: bool
    message: str


def redact(text: str, secret: str) -> str:
    """`text` with every occurrence of `secret` replaced (belt and braces for messages)."""
    return text.replace(secret, "[redacted]") if secret else text


def parse_trigger(value: str, where: str) -> TriggerTarget:
    """Parse the Secret value (JSON with url, token and optional ref); errors never quote it."""
    try:
        doc = json.loads(value)
    except ValueError:
        raise RetrainConfigError(
            "InvalidTriggerSecret", f"{where} is not JSON with url, token and ref"
        ) from None
    if not isinstance(doc, dict):
        raise RetrainConfigError("InvalidTriggerSecret", f"{where} is not a JSON object")
    url, token, ref = doc.get("url"), doc.get("token"), doc.get("ref", DEFAULT_REF)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise RetrainConfigError("InvalidTriggerSecret", f"{where}: url must be an http(s) URL")
    if not isinstance(token, str) or not token:
        raise RetrainConfigError("InvalidTriggerSecret", f"{where}: token is missing")
    if not isinstance(ref, str) or not ref:
        raise RetrainConfigError("InvalidTriggerSecret", f"{where}: ref must be a branch or tag")
    return TriggerTarget(url=url, token=token, ref=ref)


async def read_trigger(kube: KubeClient, namespace: str, name: str, key: str) -> TriggerTarget:
    """Read and parse the trigger from Secret `name`, key `key`, in the ModelService's namespace."""
    where = f"Secret {namespace}/{name} key {key!r}"
    try:
        secret = await kube.request("GET", resource_path("v1", "secrets", namespace, name))
    except ApiError as err:
        if err.status == 404:
            raise RetrainConfigError(
                "TriggerSecretNotFound", f"Secret {namespace}/{name} does not exist"
            ) from None
        raise RetrainConfigError(
            "TriggerSecretUnreadable",
            f"reading Secret {namespace}/{name} failed: HTTP {err.status}",
        ) from None
    encoded = (secret.get("data") or {}).get(key)
    if encoded is None:
        raise RetrainConfigError("TriggerSecretKeyMissing", f"{where} does not exist")
    try:
        value = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise RetrainConfigError("InvalidTriggerSecret", f"{where} is not UTF-8 text") from None
    return parse_trigger(value, where)


def trigger_form(target: TriggerTarget, variables: dict[str, str]) -> dict[str, str]:
    """GitLab's trigger API form: token, ref and variables[KEY]=value."""
    form = {"token": target.token, "ref": target.ref}
    form.update({f"variables[{k}]": v for k, v in variables.items()})
    return form


async def trigger_pipeline(
    session: aiohttp.ClientSession, target: TriggerTarget, variables: dict[str, str]
) -> TriggerOutcome:
    """POST the trigger once; never raises, and the outcome's message never holds the token."""
    where = target.safe_url()
    try:
        async with session.post(target.url, data=trigger_form(target, variables)) as resp:
            text = await resp.text()
            status = resp.status
    except TimeoutError:
        return _outcome(False, f"the trigger endpoint {where} timed out", target)
    except aiohttp.ClientError as exc:
        message = f"the trigger endpoint {where} is unreachable ({type(exc).__name__})"
        return _outcome(False, message, target)
    body = _json_object(text)
    if 200 <= status < 300:
        pipeline = body.get("id")
        link = body.get("web_url")
        message = f"pipeline {pipeline} created" if pipeline is not None else "pipeline created"
        if isinstance(link, str):
            message += f": {link}"
        return _outcome(True, message, target)
    detail = body.get("message") or body.get("error") or ""
    message = f"the trigger endpoint {where} answered HTTP {status}"
    if detail:
        message += f": {str(detail)[:200]}"
    return _outcome(False, message, target)


def _outcome(ok: bool, message: str, target: TriggerTarget) -> TriggerOutcome:
    return TriggerOutcome(ok, redact(message, target.token)[:500])


def _json_object(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}

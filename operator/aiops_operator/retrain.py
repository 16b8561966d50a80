"""The retrain reaction: POST the CI pipeline trigger named by spec.drift.retrain.triggerSecretRef.

The Secret key holds one JSON object, e.g.
`{"url": "https://gitlab.example.com/api/v4/projects/42/trigger/pipeline", "token": "glptt-...",
"ref": "main"}` (`ref` defaults to main). The request is GitLab's pipeline trigger API: a form
with `token`, `ref` and `inputs[...]` naming the ModelService, so the retrain job knows what to
retrain. Pipeline inputs, not variables: the pipeline declares them (`spec:inputs` in
.gitlab-ci.yml) with a pattern each, GitLab refuses a value that does not match, and a project
that forbids pipeline variables (the setting that stops a trigger from overriding the job's
image, push URL or guard) still accepts inputs.

The token is sent and nothing else: it never enters a message, a log line, an Event or the
status (every message passes through `redact`, and only the URL's scheme, host and path are
ever shown).

The Secret is the tenant's, so the operator must not become their proxy (a confused deputy):
- the URL must lie under a prefix of the operator setting `retrainUrlPrefixes`, which only the
  platform team controls (`TriggerPolicy`); no prefix means the retrain action is off, and
  plain http needs `retrainAllowHttp`;
- redirects are not followed (a 3xx is a failure: a 307 would re-POST the token elsewhere);
- the answer is read bounded (bounded.py) and only validated fields are published: a numeric
  pipeline id and a `web_url` on an allowed origin, never the answer's free text.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import aiohttp

from aiops_operator.bounded import HEADERS, AnswerRefused, answered, read_capped, strict_json
from aiops_operator.kube import KubeApiError, KubeClient, resource_path

DEFAULT_REF = "main"
TRIGGER_BODY_MAX = 16 * 1024  # GitLab's pipeline answer is about 1 KB
PIPELINE_ID_MAX = 2**63 - 1
WEB_URL_MAX = 300
_PATH = re.compile(r"/[A-Za-z0-9/_.~%+-]*")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_.-]{0,199}")
# The patterns .gitlab-ci.yml's spec:inputs declares (tests/delivery/test_gitlab_ci.py ties them):
# a value that does not match would make GitLab refuse the whole pipeline, so it is sent empty.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
RETRAIN_INPUT_PATTERNS = {
    "modelservice": _DNS_LABEL,
    "namespace": _DNS_LABEL,
    "drift_time": re.compile(
        r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
        r"(Z|[+-][0-9]{2}:[0-9]{2}))?"
    ),
    "drift_p_value": re.compile(r"([0-9](\.[0-9]{1,17})?(e-?[0-9]{1,3})?)?"),
}


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


@dataclass(frozen=True)
class TriggerPolicy:
    """Which trigger URLs the operator may call: the platform team's setting, not the tenant's."""

    prefixes: tuple[str, ...] = ()
    allow_http: bool = False

    @classmethod
    def from_setting(cls, prefixes: str, allow_http: bool) -> TriggerPolicy:
        """Parse the comma-separated setting; raises ValueError on a prefix that is no base URL."""
        parsed = tuple(p.strip() for p in prefixes.split(",") if p.strip())
        for prefix in parsed:
            parts = urlsplit(prefix)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise ValueError(f"retrain URL prefix {prefix!r} is not an http(s) base URL")
            if parts.scheme == "http" and not allow_http:
                raise ValueError(f"retrain URL prefix {prefix!r} is http: set retrainAllowHttp")
            if parts.username or parts.password or parts.query or parts.fragment:
                raise ValueError(f"retrain URL prefix {prefix!r} has credentials or a query")
        return cls(parsed, allow_http)

    def require_enabled(self) -> None:
        """Raise RetrainConfigError when no prefix is allowed: the retrain action is off."""
        if not self.prefixes:
            raise RetrainConfigError(
                "RetrainNotAllowed",
                "the operator allows no trigger URL (its setting retrainUrlPrefixes is empty):"
                " ask the platform team to allow your CI server",
            )

    def check(self, url: str, where: str) -> None:
        """Raise RetrainConfigError unless `url` is under one of the prefixes."""
        self.require_enabled()
        parts = urlsplit(url)
        if parts.scheme == "http" and not self.allow_http:
            raise RetrainConfigError("TriggerURLNotAllowed", f"{where}: url must be https")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise RetrainConfigError(
                "TriggerURLNotAllowed", f"{where}: url must have no credentials, query or fragment"
            )
        if not _safe_path(parts.path):
            raise RetrainConfigError(
                "TriggerURLNotAllowed", f"{where}: url path has characters or dot segments"
                " that are not allowed",
            )  # fmt: skip
        if not any(_under(parts, urlsplit(prefix)) for prefix in self.prefixes):
            raise RetrainConfigError(
                "TriggerURLNotAllowed",
                f"{where}: url is under none of the operator's allowed prefixes"
                f" ({', '.join(self.prefixes)})",
            )

    def publishable(self, link: Any) -> str | None:
        """`link` if it is a short URL on an allowed origin (a pipeline's web_url), else None."""
        if not isinstance(link, str) or len(link) > WEB_URL_MAX:
            return None
        parts = urlsplit(link)
        if parts.username or parts.password or not _safe_path(parts.path):
            return None
        for prefix in self.prefixes:
            allowed = urlsplit(prefix)
            if parts.scheme == allowed.scheme and _origin(parts) == _origin(allowed):
                return f"{parts.scheme}://{_origin(parts)}{parts.path}"
        return None


def _origin(parts: SplitResult) -> str:
    try:
        port = parts.port
    except ValueError:
        return ""
    default = 443 if parts.scheme == "https" else 80
    host = (parts.hostname or "").lower()
    return host if port in (None, default) else f"{host}:{port}"


def _safe_path(path: str) -> bool:
    if not _PATH.fullmatch(path or "/"):
        return False
    return not any(unquote(seg) in (".", "..") for seg in path.split("/"))


def _under(url: SplitResult, prefix: SplitResult) -> bool:
    """Same scheme and origin, and the path within the prefix's path (on a segment boundary)."""
    if url.scheme != prefix.scheme or not _origin(url) or _origin(url) != _origin(prefix):
        return False
    base = prefix.path or "/"
    if base.endswith("/"):
        return (url.path or "/").startswith(base)
    return url.path == base or url.path.startswith(base + "/")


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
    if not isinstance(ref, str) or not _REF.fullmatch(ref) or ".." in ref:
        raise RetrainConfigError("InvalidTriggerSecret", f"{where}: ref must be a branch or tag")
    return TriggerTarget(url=url, token=token, ref=ref)


async def read_trigger(kube: KubeClient, namespace: str, name: str, key: str) -> TriggerTarget:
    """Read and parse the trigger from Secret `name`, key `key`, in the ModelService's namespace."""
    where = f"Secret {namespace}/{name} key {key!r}"
    try:
        secret = await kube.request("GET", resource_path("v1", "secrets", namespace, name))
    except KubeApiError as err:
        if err.status == 404:
            raise RetrainConfigError(
                "TriggerSecretNotFound", f"Secret {namespace}/{name} does not exist"
            ) from None
        if err.status == 403:
            raise RetrainConfigError(
                "TriggerSecretForbidden",
                f"the operator may not read Secret {namespace}/{name}: this namespace has not"
                " opted in (a RoleBinding here to the operator's ClusterRole"
                " <release>-retrain-trigger; see docs/operator.md, the retrain trigger)",
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


def retrain_inputs(
    namespace: str, name: str, drift_time: str | None, p_value: float | None
) -> dict[str, str]:
    """The pipeline inputs naming what drifted; a value outside its pattern is sent empty."""
    values = {
        "modelservice": name,
        "namespace": namespace,
        "drift_time": drift_time or "",
        "drift_p_value": "" if p_value is None else f"{p_value:.6g}",
    }
    return {
        key: value if RETRAIN_INPUT_PATTERNS[key].fullmatch(value) else ""
        for key, value in values.items()
    }


def trigger_form(target: TriggerTarget, inputs: dict[str, str]) -> dict[str, str]:
    """GitLab's trigger API form: token, ref and inputs[KEY]=value (no pipeline variables)."""
    form = {"token": target.token, "ref": target.ref}
    form.update({f"inputs[{k}]": v for k, v in inputs.items()})
    return form


async def trigger_pipeline(
    session: aiohttp.ClientSession,
    target: TriggerTarget,
    inputs: dict[str, str],
    policy: TriggerPolicy,
) -> TriggerOutcome:
    """POST the trigger once; never raises, and the outcome's message never holds the token or
    any free text of the answer."""
    where = target.safe_url()
    try:
        async with session.post(
            target.url, data=trigger_form(target, inputs), headers=HEADERS,
            allow_redirects=False,
        ) as resp:  # fmt: skip
            status = resp.status
            if not 200 <= status < 300:
                return _outcome(False, f"the trigger endpoint {where} {answered(status)}", target)
            try:
                body: Any = strict_json(await read_capped(resp, TRIGGER_BODY_MAX))
            except AnswerRefused as exc:
                return _outcome(True, f"pipeline created; its answer was not read: {exc}", target)
    except TimeoutError:
        return _outcome(False, f"the trigger endpoint {where} timed out", target)
    except aiohttp.ClientError as exc:
        message = f"the trigger endpoint {where} is unreachable ({type(exc).__name__})"
        return _outcome(False, message, target)
    doc = body if isinstance(body, dict) else {}
    pipeline: Any = doc.get("id")
    numeric = isinstance(pipeline, int) and not isinstance(pipeline, bool)
    valid_id = numeric and 0 < pipeline <= PIPELINE_ID_MAX
    message = f"pipeline {pipeline} created" if valid_id else "pipeline created"
    link = policy.publishable(doc.get("web_url"))
    if link is not None:
        message += f": {link}"
    return _outcome(True, message, target)


def _outcome(ok: bool, message: str, target: TriggerTarget) -> TriggerOutcome:
    return TriggerOutcome(ok, redact(message, target.token)[:500])

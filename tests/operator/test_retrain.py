"""The retrain trigger: GitLab's form fields reach the endpoint, the token never shows up in an
outcome message, a repr or an error about the Secret, and the operator is nobody's proxy: only
URLs under the platform's prefixes, no redirects, bounded answers, only validated fields."""

from __future__ import annotations

import asyncio
import socket
from http.server import BaseHTTPRequestHandler

import pytest

from aiops_operator import bounded
from aiops_operator.retrain import (
    RetrainConfigError,
    TriggerOutcome,
    TriggerPolicy,
    TriggerTarget,
    parse_trigger,
    redact,
    retrain_inputs,
    trigger_pipeline,
)
from tests.fakes import fake_server, raw_server

TOKEN = "glptt-unit-test-4f1c9a77e2"
INPUTS = retrain_inputs("ml", "breast-cancer", "2026-12-02T04:00:00.5Z", 0.0012345678)


def fire(
    target: TriggerTarget, timeout_s: float = 2.0, policy: TriggerPolicy | None = None
) -> TriggerOutcome:
    """POST the trigger with the operator's own session; the policy allows the target's origin."""
    if policy is None:
        origin = target.url.split("/", 3)
        policy = TriggerPolicy((f"{origin[0]}//{origin[2].rsplit('@', 1)[-1]}/",), True)

    async def go() -> TriggerOutcome:
        async with bounded.session(timeout_s) as session:
            return await trigger_pipeline(session, target, INPUTS, policy)

    return asyncio.run(go())


def test_the_trigger_posts_gitlabs_form_with_the_token_and_ref() -> None:
    with fake_server(201, {}) as gitlab:
        gitlab.body = {"id": 4711, "web_url": f"{gitlab.base}/p/-/pipelines/4711"}
        target = TriggerTarget(f"{gitlab.base}/api/v4/projects/7/trigger/pipeline", TOKEN, "dev")
        outcome = fire(target)
        (request,) = gitlab.received()
    assert request.method == "POST"
    assert request.path == "/api/v4/projects/7/trigger/pipeline"
    assert request.form["token"] == TOKEN
    assert request.form["ref"] == "dev"
    assert request.form["inputs[modelservice]"] == "breast-cancer"
    assert request.form["inputs[namespace]"] == "ml"
    assert request.form["inputs[drift_time]"] == "2026-12-02T04:00:00.5Z"
    assert request.form["inputs[drift_p_value]"] == "0.00123457"
    # No pipeline variables: a project that forbids them (so that no trigger can override the
    # job's image, push URL or guard) accepts inputs only.
    assert not [name for name in request.form if name.startswith("variables")]
    assert outcome.ok
    assert outcome.message == f"pipeline 4711 created: {gitlab.base}/p/-/pipelines/4711"
    assert TOKEN not in outcome.message


def test_a_refused_trigger_is_a_failure_whose_message_hides_an_echoed_token() -> None:
    with fake_server(401, {"message": f"401 Unauthorized: bad token {TOKEN}"}) as gitlab:
        outcome = fire(TriggerTarget(f"{gitlab.base}/trigger?token={TOKEN}", TOKEN))
    assert not outcome.ok
    assert "HTTP 401" in outcome.message
    assert TOKEN not in outcome.message
    assert "?token" not in outcome.message


def test_an_unreachable_endpoint_is_a_failure_not_an_exception() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = fire(TriggerTarget(f"http://user:{TOKEN}@127.0.0.1:{port}/trigger", TOKEN))
    assert not outcome.ok
    assert "unreachable" in outcome.message
    assert TOKEN not in outcome.message


def test_the_token_stays_out_of_repr() -> None:
    target = parse_trigger(f'{{"url": "https://gitlab.example/t", "token": "{TOKEN}"}}', "where")
    assert target.ref == "main"
    assert TOKEN not in repr(target)
    assert TOKEN not in str(target)


@pytest.mark.parametrize(
    "value",
    [
        TOKEN,
        f'["{TOKEN}"]',
        f'{{"url": "ftp://x", "token": "{TOKEN}"}}',
        '{"url": "https://gitlab.example/t"}',
        f'{{"url": "https://gitlab.example/t", "token": "{TOKEN}", "ref": ""}}',
    ],
)
def test_a_bad_secret_value_is_refused_without_quoting_it(value: str) -> None:
    with pytest.raises(RetrainConfigError) as err:
        parse_trigger(value, "Secret ml/gitlab-trigger key 'trigger'")
    assert err.value.reason == "InvalidTriggerSecret"
    assert "gitlab-trigger" in err.value.message
    assert TOKEN not in err.value.message


def test_redact_replaces_every_occurrence() -> None:
    assert redact(f"{TOKEN} and {TOKEN}", TOKEN) == "[redacted] and [redacted]"
    assert redact("nothing", "") == "nothing"


POLICY = TriggerPolicy.from_setting("https://gitlab.example.com/api/v4/projects/", False)
WHERE = "Secret ml/gitlab-trigger key 'trigger'"


def test_a_trigger_url_under_the_prefix_is_allowed() -> None:
    POLICY.check("https://gitlab.example.com/api/v4/projects/42/trigger/pipeline", WHERE)
    POLICY.check("https://GITLAB.example.com:443/api/v4/projects/g%2Fp/trigger/pipeline", WHERE)


@pytest.mark.parametrize(
    "url",
    [
        "http://gitlab.example.com/api/v4/projects/42/trigger/pipeline",  # not https
        "https://gitlab.example.com.evil.io/api/v4/projects/42/trigger/pipeline",
        "https://gitlab.example.com:8443/api/v4/projects/42/trigger/pipeline",
        "https://gitlab.example.com/api/v4/projectsX/42",
        "https://gitlab.example.com/api/v4/projects/../../../admin",
        "https://gitlab.example.com/api/v4/projects/%2e%2e/%2E%2E/admin",
        "https://gitlab.example.com/api/v4/projects/42?url=http://10.0.0.1/",
        "https://user:pw@gitlab.example.com/api/v4/projects/42",
        "https://10.96.0.1/api/v4/projects/42/trigger/pipeline",  # an internal endpoint
        "https://gitlab.example.com/api/v4/projects/42/<script>",
    ],
)
def test_a_trigger_url_outside_the_prefixes_is_refused(url: str) -> None:
    with pytest.raises(RetrainConfigError) as err:
        POLICY.check(url, WHERE)
    assert err.value.reason == "TriggerURLNotAllowed"
    assert "gitlab-trigger" in err.value.message


def test_without_prefixes_the_retrain_action_is_off() -> None:
    with pytest.raises(RetrainConfigError) as err:
        TriggerPolicy.from_setting("", False).check("https://gitlab.example.com/x", WHERE)
    assert err.value.reason == "RetrainNotAllowed"
    assert "retrainUrlPrefixes" in err.value.message


@pytest.mark.parametrize(
    ("setting", "allow_http"),
    [("gitlab.example.com/api", False), ("http://gitlab.example.com/", False),
     ("https://u:p@gitlab.example.com/", False), ("https://gitlab.example.com/?a=1", True)],
)  # fmt: skip
def test_a_bad_prefix_setting_stops_the_operator(setting: str, allow_http: bool) -> None:
    with pytest.raises(ValueError, match="retrain"):
        TriggerPolicy.from_setting(setting, allow_http)


def test_a_redirect_is_a_failure_and_the_token_is_not_posted_again() -> None:
    with fake_server(201, {"id": 1}) as elsewhere:

        def redirect(h: BaseHTTPRequestHandler) -> None:
            h.send_response(307)
            h.send_header("Location", f"{elsewhere.base}/steal")
            h.send_header("Content-Length", "0")
            h.end_headers()

        with raw_server(redirect) as gitlab:
            outcome = fire(TriggerTarget(f"{gitlab.base}/trigger", TOKEN))
        assert not elsewhere.received()
    assert not outcome.ok
    assert "307 (redirects are not followed)" in outcome.message


def test_an_internal_endpoints_error_text_is_not_published() -> None:
    leak = "internal admin console: user list follows"
    with fake_server(403, {"message": leak, "error": leak}) as internal:
        outcome = fire(TriggerTarget(f"{internal.base}/api/admin", TOKEN))
    assert not outcome.ok
    assert outcome.message == f"the trigger endpoint {internal.base}/api/admin answered HTTP 403"


@pytest.mark.parametrize(
    "body",
    [
        {"id": "4711; see http://evil.io", "web_url": "https://evil.io/phish"},
        {"id": True, "web_url": "javascript:alert(1)"},
        {"id": 2**70, "web_url": "https://user:pw@gitlab.example/x"},
    ],
)
def test_only_a_numeric_id_and_a_web_url_on_an_allowed_origin_are_published(
    body: dict[str, object],
) -> None:
    with fake_server(201, body) as gitlab:
        outcome = fire(TriggerTarget(f"{gitlab.base}/trigger", TOKEN))
    assert outcome.ok
    assert outcome.message == "pipeline created"


def test_an_oversized_trigger_answer_is_not_read() -> None:
    def huge(h: BaseHTTPRequestHandler) -> None:
        h.send_response(201)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"x" * 65536
        for _ in range(400 * 16):  # 400 MiB
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    with raw_server(huge) as gitlab:
        outcome = fire(TriggerTarget(f"{gitlab.base}/trigger", TOKEN))
        assert gitlab.total_written() < 16 * 1024 * 1024
    assert outcome.ok  # GitLab answered 201: the pipeline exists
    assert "its answer was not read" in outcome.message


def test_an_answer_with_nan_is_not_read_as_json() -> None:
    def nan(h: BaseHTTPRequestHandler) -> None:
        body = b'{"id": NaN, "web_url": Infinity}'
        h.send_response(201)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    with raw_server(nan) as gitlab:
        outcome = fire(TriggerTarget(f"{gitlab.base}/trigger", TOKEN))
    assert outcome.ok
    assert outcome.message.startswith("pipeline created; its answer was not read")
    assert "NaN" in outcome.message


@pytest.mark.parametrize(
    ("drift_time", "p_value", "sent"),
    [
        ("2026-12-02T04:00:00Z", 1e-05, ("2026-12-02T04:00:00Z", "1e-05")),
        ("2026-12-02T04:00:00+02:00", 0.5, ("2026-12-02T04:00:00+02:00", "0.5")),
        (None, None, ("", "")),
        # Text the runtime made up: sent empty, so GitLab does not refuse the whole pipeline.
        ("yesterday; rm -rf /", float("nan"), ("", "")),
    ],
)
def test_inputs_outside_the_pipelines_patterns_are_sent_empty(
    drift_time: str | None, p_value: float | None, sent: tuple[str, str]
) -> None:
    inputs = retrain_inputs("ml", "breast-cancer", drift_time, p_value)
    assert (inputs["drift_time"], inputs["drift_p_value"]) == sent
    assert (inputs["namespace"], inputs["modelservice"]) == ("ml", "breast-cancer")

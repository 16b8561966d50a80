"""The retrain trigger: GitLab's form fields reach the endpoint, and the token never shows up in
an outcome message, a repr or an error about the Secret."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from aiops_operator.retrain import (
    RetrainConfigError,
    TriggerOutcome,
    TriggerTarget,
    parse_trigger,
    redact,
    trigger_pipeline,
)
from tests.loop.loop_helpers import fake_server

TOKEN = "glptt-unit-test-4f1c9a77e2"
VARIABLES = {"AIOPS_MODELSERVICE": "breast-cancer", "AIOPS_NAMESPACE": "ml"}


def fire(target: TriggerTarget, timeout_s: float = 2.0) -> TriggerOutcome:
    async def go() -> TriggerOutcome:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            return await trigger_pipeline(session, target, VARIABLES)

    return asyncio.run(go())


def test_the_trigger_posts_gitlabs_form_with_the_token_and_ref() -> None:
    created = {"id": 4711, "web_url": "https://gitlab.example/p/-/pipelines/4711"}
    with fake_server(201, created) as gitlab:
        target = TriggerTarget(f"{gitlab.base}/api/v4/projects/7/trigger/pipeline", TOKEN, "dev")
        outcome = fire(target)
        (request,) = gitlab.received()
    assert request.method == "POST"
    assert request.path == "/api/v4/projects/7/trigger/pipeline"
    assert request.form["token"] == TOKEN
    assert request.form["ref"] == "dev"
    assert request.form["variables[AIOPS_MODELSERVICE]"] == "breast-cancer"
    assert request.form["variables[AIOPS_NAMESPACE]"] == "ml"
    assert outcome.ok
    assert "4711" in outcome.message
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

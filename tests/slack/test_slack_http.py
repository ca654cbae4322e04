"""HTTP Events API mode: signed requests are served, forged or stale ones get 401."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from slack_sdk.signature import SignatureVerifier

from adapters.slack.app import SlackAdapter
from adapters.slack.runners import HttpRunner
from tests.slack.conftest import AGENT, SIGNING_SECRET, SUPPORT_CHANNEL, Stack
from tests.slack.fake_slack import FakeSlack, event_callback, message_event, slash_command


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[HttpRunner]:
    runner = HttpRunner(stack.adapter(), host="127.0.0.1", port=0)
    await runner.start()
    yield runner
    await runner.stop()


async def post(runner: HttpRunner, body: dict[str, Any], secret: str = SIGNING_SECRET,
               age_s: float = 0.0, headers: dict[str, str] | None = None,
               form: bool = False) -> int:
    raw = urlencode(body) if form else json.dumps(body)
    timestamp = str(int(time.time() - age_s))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=raw) or ""
    content_type = "application/x-www-form-urlencoded" if form else "application/json"
    all_headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp,
                   "X-Slack-Signature": signature, **(headers or {})}
    async with aiohttp.ClientSession() as session, \
            session.post(runner.url, data=raw, headers=all_headers) as resp:
        status = resp.status
    await runner.adapter.idle()
    return status


def adapter(runner: HttpRunner) -> SlackAdapter:
    return runner.adapter


async def test_signed_event_answered_and_retry_is_not(http: HttpRunner,
                                                      fake_slack: FakeSlack) -> None:
    question = message_event(SUPPORT_CHANNEL, "How do I reset my password?")
    body = event_callback(question)
    assert await post(http, body) == 200
    assert await post(http, body, headers={"X-Slack-Retry-Num": "1",
                                           "X-Slack-Retry-Reason": "http_timeout"}) == 200
    assert len(fake_slack.thread(SUPPORT_CHANNEL, question["ts"])) == 1
    assert adapter(http).outcomes["duplicate"] == 1


@pytest.mark.parametrize(("secret", "age_s"), [
    ("forged-secret", 0.0),  # signed with the wrong secret
    (SIGNING_SECRET, 6 * 60.0),  # right secret, but older than five minutes (a replay)
])
async def test_bad_signature_gets_401_and_no_reply(http: HttpRunner, fake_slack: FakeSlack,
                                                   secret: str, age_s: float) -> None:
    question = message_event(SUPPORT_CHANNEL, "How do I reset my password?")
    assert await post(http, event_callback(question), secret=secret, age_s=age_s) == 401
    assert fake_slack.calls_to("chat.postMessage") == []
    assert sum(adapter(http).outcomes.values()) == 0


async def test_url_verification_challenge(http: HttpRunner) -> None:
    body = {"type": "url_verification", "challenge": "abc123", "token": "legacy"}
    raw = json.dumps(body)
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(
        timestamp=timestamp, body=raw) or ""
    async with aiohttp.ClientSession() as session, session.post(
            http.url, data=raw, headers={"Content-Type": "application/json",
                                         "X-Slack-Request-Timestamp": timestamp,
                                         "X-Slack-Signature": signature}) as resp:
        assert resp.status == 200
        assert (await resp.json())["challenge"] == "abc123"


async def test_slash_command_over_http(http: HttpRunner, fake_slack: FakeSlack) -> None:
    command = slash_command(fake_slack, "help", AGENT)
    assert await post(http, command, form=True) == 200
    [response] = fake_slack.responses
    assert response["response_type"] == "ephemeral" and "/support claim" in str(response)
    assert await post(http, command, secret="forged", form=True) == 401
    assert len(fake_slack.responses) == 1

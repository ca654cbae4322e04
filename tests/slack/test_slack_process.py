"""`supportbot slack`: the whole process wired from Settings, against the fake Slack and a fake
OpenAI-compatible engine (SUPPORTBOT_LLM=http: the engine client the settings name, without
loading a model); and the process as the CLI starts it, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import json

import pytest

from adapters.cli import main
from adapters.slack.process import run_slack
from bot.keys import Keys
from bot.settings import load_settings
from tests.cli_process import run_then_sigterm, slack_env
from tests.conftest import REDIS_URL
from tests.fake_engine import ANSWER, CITATION, GENERATED, FakeEngine, engine  # noqa: F401
from tests.slack.conftest import AGENT_CHANNEL, SUPPORT_CHANNEL
from tests.slack.fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack, message_event


async def test_process_from_settings_answers_in_thread(fake_slack: FakeSlack,
                                                       redis_keys: Keys,
                                                       engine: FakeEngine  # noqa: F811
                                                       ) -> None:
    settings = load_settings(
        slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN, slack_api_url=fake_slack.api_url,
        redis_url=REDIS_URL, redis_prefix=redis_keys.prefix, llm="http", llm_url=engine.url,
        support_channels=[SUPPORT_CHANNEL], slack_agent_channel=AGENT_CHANNEL)
    stop = asyncio.Event()
    process = asyncio.create_task(run_slack(settings, stop))
    try:
        await fake_slack.wait_connected()
        question = message_event(SUPPORT_CHANNEL, "How do I reset my password?")
        await fake_slack.wait_ack(await fake_slack.send_event(question))
        await fake_slack.wait_for(lambda: bool(fake_slack.thread(SUPPORT_CHANNEL,
                                                                 question["ts"])))
        # An unanswerable one: the card lands in Slack's agents' channel.
        other = message_event(SUPPORT_CHANNEL, "my invoice numbers jumped from 17 to 94")
        await fake_slack.wait_ack(await fake_slack.send_event(other))
        await fake_slack.wait_for(lambda: bool(fake_slack.in_channel(AGENT_CHANNEL)))
    finally:
        stop.set()
        await asyncio.wait_for(process, 10)
    [reply] = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
    assert ANSWER in reply.text and CITATION in json.dumps(reply.blocks)
    [card] = fake_slack.in_channel(AGENT_CHANNEL)
    assert any(b["type"] == "actions" for b in card.blocks)
    # The ticket summary was written by the engine SUPPORTBOT_LLM names, not the fallback
    # of the last messages: `supportbot slack` builds its engine client from the settings.
    assert GENERATED in json.dumps(card.blocks) and engine.requests


async def test_cli_process_stops_on_sigterm_after_finishing_its_reply(
        fake_slack: FakeSlack, engine: FakeEngine) -> None:  # noqa: F811
    question = message_event(SUPPORT_CHANNEL, "How do I reset my password?")

    async def ask() -> None:
        await fake_slack.wait_connected(within_s=60)  # a cold start imports slack-bolt
        await fake_slack.wait_ack(await fake_slack.send_event(question))
        # SIGTERM follows at once: the answer is (about to be) written when it arrives

    status, log = await run_then_sigterm("slack", slack_env(fake_slack, engine), ask)
    assert status == 0, log
    # The reply in flight was finished, not cut off, and came through the engine client.
    [reply] = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
    assert ANSWER in reply.text and CITATION in json.dumps(reply.blocks)
    assert engine.requests
    assert "slack: started slack (socket mode), sharing one bot stack and one engine " \
           "client (http)" in log
    assert "slack: stopped" in log  # the drain-and-close path ran, not a kill


def test_cli_names_missing_settings(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SUPPORTBOT_SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SUPPORTBOT_SLACK_APP_TOKEN", "")
    assert main(["slack"]) == 2
    assert "SUPPORTBOT_SLACK_APP_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("SUPPORTBOT_SLACK_SIGNING_SECRET", "")
    assert main(["slack", "--http"]) == 2
    assert "SUPPORTBOT_SLACK_SIGNING_SECRET" in capsys.readouterr().err

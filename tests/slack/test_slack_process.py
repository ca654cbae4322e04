"""`supportbot slack`: the whole process wired from Settings, against the fake Slack."""

from __future__ import annotations

import asyncio

import pytest

from adapters.cli import main
from adapters.slack.process import run_slack
from bot.keys import Keys
from bot.settings import load_settings
from tests.conftest import REDIS_URL
from tests.slack.conftest import AGENT_CHANNEL, SUPPORT_CHANNEL
from tests.slack.fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack, message_event


async def test_process_from_settings_answers_in_thread(fake_slack: FakeSlack,
                                                       redis_keys: Keys) -> None:
    settings = load_settings(
        slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN, slack_api_url=fake_slack.api_url,
        redis_url=REDIS_URL, redis_prefix=redis_keys.prefix,
        support_channels=[SUPPORT_CHANNEL], agent_channel=AGENT_CHANNEL)
    stop = asyncio.Event()
    process = asyncio.create_task(run_slack(settings, stop))
    try:
        await fake_slack.wait_connected()
        question = message_event(SUPPORT_CHANNEL, "How do I reset my password?")
        await fake_slack.wait_ack(await fake_slack.send_event(question))
        await fake_slack.wait_for(lambda: bool(fake_slack.thread(SUPPORT_CHANNEL,
                                                                 question["ts"])))
        # An unanswerable one: the card lands in the configured agents' channel.
        other = message_event(SUPPORT_CHANNEL, "my invoice numbers jumped from 17 to 94")
        await fake_slack.wait_ack(await fake_slack.send_event(other))
        await fake_slack.wait_for(lambda: bool(fake_slack.in_channel(AGENT_CHANNEL)))
    finally:
        stop.set()
        await asyncio.wait_for(process, 10)
    [reply] = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
    assert "Reset password" in reply.text
    [card] = fake_slack.in_channel(AGENT_CHANNEL)
    assert any(b["type"] == "actions" for b in card.blocks)


def test_cli_names_missing_settings(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SUPPORTBOT_SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SUPPORTBOT_SLACK_APP_TOKEN", "")
    assert main(["slack"]) == 2
    assert "SUPPORTBOT_SLACK_APP_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("SUPPORTBOT_SLACK_SIGNING_SECRET", "")
    assert main(["slack", "--http"]) == 2
    assert "SUPPORTBOT_SLACK_SIGNING_SECRET" in capsys.readouterr().err

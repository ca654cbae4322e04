"""`supportbot run`: every adapter with credentials in one process, one bot stack and one
engine client, against the fake Slack, the fake Discord and a fake OpenAI-compatible engine
(SUPPORTBOT_LLM=http; the in-process default would load the model, minutes on a test box);
the process as the CLI starts it, stopped by SIGTERM; and the refusal to start without
credentials."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import pytest

from adapters.cli import main
from adapters.cli_run import run_adapters
from bot.settings import load_settings
from tests.cli_process import run_then_sigterm, slack_env
from tests.discord_e2e.conftest import World, fake, world  # noqa: F401  (fixtures)
from tests.discord_e2e.fake_discord import FakeDiscord
from tests.fake_engine import ANSWER, CITATION, GENERATED, FakeEngine, engine  # noqa: F401
from tests.slack.conftest import (  # noqa: F401  (fixture)
    AGENT_CHANNEL,
    SUPPORT_CHANNEL,
    fake_slack,
)
from tests.slack.fake_slack import (
    APP_TOKEN,
    BOT_TOKEN,
    FakeSlack,
    message_event,
    slash_command,
)

SLACK_AGENT = "U0AGENT"
FIRST_ANSWER_S = 180  # the first answer may build the KB's embedding index


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No SUPPORTBOT_* from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("SUPPORTBOT_"):
            monkeypatch.delenv(name)
    return dict(os.environ)


async def ask_slack(slack: FakeSlack, text: str, within_s: float = 10) -> dict[str, Any]:
    question = message_event(SUPPORT_CHANNEL, text)
    await slack.wait_ack(await slack.send_event(question))
    await slack.wait_for(lambda: bool(slack.thread(SUPPORT_CHANNEL, question["ts"])), within_s)
    return question


async def test_one_process_serves_slack_and_discord_from_one_stack(
        clean_env: dict[str, str], fake_slack: FakeSlack, fake: FakeDiscord,  # noqa: F811
        world: World, engine: FakeEngine, caplog: pytest.LogCaptureFixture  # noqa: F811
        ) -> None:
    caplog.set_level(logging.INFO)
    settings = load_settings(  # no Redis URL: the in-memory store, which only sharing can see
        slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN, slack_api_url=fake_slack.api_url,
        discord_token="fake-token", support_channels=[SUPPORT_CHANNEL, world.support],
        # Channel ids are per platform: each one's agents' channel (the shared
        # SUPPORTBOT_AGENT_CHANNEL is what used to send both platforms' cards to one id).
        slack_agent_channel=AGENT_CHANNEL, discord_agent_channel=world.agents,
        agent_users=[SLACK_AGENT], rate_limit=100, llm="http", llm_url=engine.url)
    stop = asyncio.Event()
    process = asyncio.create_task(run_adapters(settings, stop))
    try:
        await fake_slack.wait_connected()
        await fake.wait_until(fake.identified.is_set)
        on_slack = await ask_slack(fake_slack, "How do I reset my password?", FIRST_ANSWER_S)
        on_discord = await fake.say(world.support, world.customer, "How do I reset my password?")
        await fake.wait_until(lambda: len(fake.bot_messages(on_discord["id"])) == 1)
        # A question the KB cannot answer, asked on Discord, becomes a ticket there ...
        await fake.say(world.support, world.customer, "my invoice numbers jumped from 17 to 94")
        await fake.wait_until(lambda: len(fake.bot_messages(world.agents)) == 1)
        # ... and one asked on Slack becomes a ticket in Slack's agents' channel.
        await ask_slack(fake_slack, "my export to DATEV shows the wrong VAT rate")
        await fake_slack.wait_for(lambda: bool(fake_slack.in_channel(AGENT_CHANNEL)))
        # ... that a Slack agent sees: one ticket store behind both platforms.
        await fake_slack.send_envelope("slash_commands",
                                       slash_command(fake_slack, "tickets", SLACK_AGENT))
        await fake_slack.wait_for(lambda: bool(fake_slack.responses))
    finally:
        stop.set()
        await asyncio.wait_for(process, 15)
    [slack_reply] = fake_slack.thread(SUPPORT_CHANNEL, on_slack["ts"])
    assert ANSWER in slack_reply.text and CITATION in json.dumps(slack_reply.blocks)
    [discord_reply] = fake.bot_messages(on_discord["id"])
    assert ANSWER in discord_reply["content"] and CITATION in json.dumps(discord_reply)
    # The ticket's summary was written through the engine client built from the settings.
    [card] = fake.bot_messages(world.agents)  # the Discord ticket's card only
    assert GENERATED in json.dumps(card) and engine.requests
    assert "carol" in json.dumps(card)  # the Discord customer
    [slack_card] = fake_slack.in_channel(AGENT_CHANNEL)
    assert slack_card.text.startswith("Ticket ") and "carol" not in slack_card.text
    assert any(b["type"] == "actions" for b in slack_card.blocks)  # Claim / Resolve / ...
    listing = fake_slack.responses[0]["text"]  # the Discord ticket, listed on Slack
    assert "open  carol" in listing and "discord.com/channels/" in listing
    assert not fake.connected  # stopping closed the gateway connection
    logged = caplog.text
    assert "started slack (socket mode), discord, sharing one bot stack and one engine " \
           "client (http)" in logged
    assert "in-memory store is single-process" in logged


async def test_cli_process_answers_then_stops_on_sigterm(fake_slack: FakeSlack,  # noqa: F811
                                                         engine: FakeEngine  # noqa: F811
                                                         ) -> None:
    question: dict[str, Any] = {}

    async def ask() -> None:
        await fake_slack.wait_connected(within_s=60)  # a cold start imports slack-bolt, torch
        question.update(await ask_slack(fake_slack, "How do I reset my password?",
                                        FIRST_ANSWER_S))

    status, log = await run_then_sigterm("run", slack_env(fake_slack, engine), ask)
    assert status == 0, log
    [reply] = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
    assert ANSWER in reply.text and CITATION in json.dumps(reply.blocks)
    assert "started slack (socket mode), sharing one bot stack and one engine client " \
           "(http)" in log
    assert "in-memory store is single-process" in log
    assert "run: stopped" in log  # the drain-and-close path ran, not a kill


def test_no_credentials_names_the_settings(clean_env: dict[str, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    for setting in ("SUPPORTBOT_SLACK_BOT_TOKEN", "SUPPORTBOT_SLACK_APP_TOKEN",
                    "SUPPORTBOT_SLACK_SIGNING_SECRET", "SUPPORTBOT_DISCORD_TOKEN"):
        assert setting in err


def test_half_configured_slack_is_an_error_not_skipped(clean_env: dict[str, str],
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    monkeypatch.setenv("SUPPORTBOT_SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SUPPORTBOT_DISCORD_TOKEN", "fake-token")  # Discord alone would run
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "SUPPORTBOT_SLACK_APP_TOKEN" in err
    assert "SUPPORTBOT_DISCORD_TOKEN" not in err

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
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.cli import main
from adapters.cli_run import run_adapters
from bot.settings import load_settings
from tests.discord_e2e.conftest import World, fake, world  # noqa: F401  (fixtures)
from tests.discord_e2e.fake_discord import FakeDiscord
from tests.slack.conftest import SUPPORT_CHANNEL, fake_slack  # noqa: F401  (fixture)
from tests.slack.fake_slack import (
    APP_TOKEN,
    BOT_TOKEN,
    FakeSlack,
    message_event,
    slash_command,
)

CITATION = "help.tallyhub.example/reset-password"  # examples/kb/reset-password.md url
# What the fake engine generates: a sentence of that article, so that an answer is the same
# whether the answerer generates it or quotes the article; ticket summaries show it verbatim.
GENERATED = "We email a reset link that works for 30 minutes."
ANSWER = "We email a reset link"
SLACK_AGENT = "U0AGENT"
REPO = Path(__file__).resolve().parents[1]
FIRST_ANSWER_S = 180  # the first answer may build the KB's embedding index


class FakeEngine:
    """An OpenAI-compatible server that streams GENERATED and records each request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for text, finish in ((GENERATED, None), ("", "stop")):
            chunk = {"choices": [{"index": 0, "delta": {"content": text},
                                  "finish_reason": finish}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp


@pytest.fixture
async def engine() -> Any:
    server = FakeEngine()
    await server.start()
    yield server
    await server.stop()


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
        agent_channel=world.agents, agent_users=[SLACK_AGENT], rate_limit=100,
        llm="http", llm_url=engine.url)
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
    [card] = fake.bot_messages(world.agents)
    assert GENERATED in json.dumps(card) and engine.requests
    listing = fake_slack.responses[0]["text"]  # the Discord ticket, listed on Slack
    assert "open  carol" in listing and "discord.com/channels/" in listing
    assert not fake.connected  # stopping closed the gateway connection
    logged = caplog.text
    assert "started slack (socket mode), discord, sharing one bot stack and one engine " \
           "client (http)" in logged
    assert "in-memory store is single-process" in logged


async def test_cli_process_answers_then_stops_on_sigterm(clean_env: dict[str, str],
                                                         fake_slack: FakeSlack,  # noqa: F811
                                                         engine: FakeEngine) -> None:
    env = {**clean_env, "SUPPORTBOT_SLACK_BOT_TOKEN": BOT_TOKEN,
           "SUPPORTBOT_LLM": "http", "SUPPORTBOT_LLM_URL": engine.url,
           "SUPPORTBOT_SLACK_APP_TOKEN": APP_TOKEN,
           "SUPPORTBOT_SLACK_API_URL": fake_slack.api_url,
           "SUPPORTBOT_SUPPORT_CHANNELS": SUPPORT_CHANNEL,
           "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", "run", env=env, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await fake_slack.wait_connected(within_s=60)  # a cold start imports slack-bolt, torch
        question = await ask_slack(fake_slack, "How do I reset my password?", FIRST_ANSWER_S)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = err.decode()
    assert proc.returncode == 0, log
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

"""`supportbot discord`'s main coroutine, as the CLI runs it (stopped by SIGTERM), against the
fake Discord and a fake OpenAI-compatible engine (SUPPORTBOT_LLM=http: the engine client the
settings name, without loading a model)."""

from __future__ import annotations

import asyncio
import json
import os
import signal

from adapters.discordbot.app import run_discord
from adapters.serve import until_signalled
from bot.settings import Settings
from tests.discord_e2e.conftest import World
from tests.discord_e2e.fake_discord import FakeDiscord
from tests.fake_engine import ANSWER, GENERATED, FakeEngine, engine  # noqa: F401


async def test_run_discord_answers_then_stops_on_sigterm(world: World, fake: FakeDiscord,
                                                         settings: Settings,
                                                         engine: FakeEngine  # noqa: F811
                                                         ) -> None:
    settings = settings.model_copy(update={"llm": "http", "llm_url": engine.url,
                                           "agent_channel": "",
                                           "discord_agent_channel": world.agents})
    task = asyncio.create_task(until_signalled(lambda stop: run_discord(settings, stop)))
    await fake.wait_until(fake.identified.is_set)
    question = await fake.say(world.support, world.customer, "How do I reset my password?")
    await fake.wait_until(lambda: len(fake.bot_messages(question["id"])) == 1)
    await fake.wait_until(lambda: world.guild in fake.commands)  # /support synced on ready
    await fake.say(world.support, world.customer, "my invoice numbers jumped from 17 to 94")
    await fake.wait_until(lambda: len(fake.bot_messages(world.agents)) == 1)
    os.kill(os.getpid(), signal.SIGTERM)  # what docker stop / Kubernetes send
    await asyncio.wait_for(task, 15)  # returns normally: drained and closed, not killed
    assert not fake.connected  # it closed its gateway connection
    assert ANSWER in fake.bot_messages(question["id"])[0]["content"]
    # The ticket summary came from the engine SUPPORTBOT_LLM names: `supportbot discord`
    # builds its engine client from the settings.
    [card] = fake.bot_messages(world.agents)
    assert GENERATED in json.dumps(card) and engine.requests

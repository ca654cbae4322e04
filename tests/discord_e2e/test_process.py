"""`supportbot discord`'s main coroutine, as the CLI runs it, against the fake Discord."""

from __future__ import annotations

import asyncio
import contextlib

from adapters.discordbot.app import run_discord
from bot.settings import Settings
from tests.discord_e2e.conftest import World
from tests.discord_e2e.fake_discord import FakeDiscord


async def test_run_discord_answers_then_stops_cleanly(world: World, fake: FakeDiscord,
                                                      settings: Settings) -> None:
    task = asyncio.create_task(run_discord(settings))
    await fake.wait_until(fake.identified.is_set)
    question = await fake.say(world.support, world.customer, "How do I reset my password?")
    await fake.wait_until(lambda: len(fake.bot_messages(question["id"])) == 1)
    await fake.wait_until(lambda: world.guild in fake.commands)  # /support synced on ready
    task.cancel()  # what Ctrl-C does to asyncio.run
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await fake.wait_until(lambda: not fake.connected)  # it closed its gateway connection
    assert "Reset password" in fake.bot_messages(question["id"])[0]["content"]

"""Fixtures: a fake Discord, the real bot pipeline on the real Redis, and the real discord.py
client connected to the fake (its REST base and gateway URL pointed there)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discordbot.app import build_discord
from adapters.discordbot.client import SupportClient
from adapters.wiring import Support
from bot.keys import Keys
from bot.ports import Answerer
from bot.settings import Settings, load_settings
from tests.conftest import REDIS_URL
from tests.discord_e2e.fake_discord import FakeDiscord


@dataclass
class World:
    """The fake Discord with one guild: a support text channel, a support forum, an agents'
    channel and a plain channel; a customer, an admin and an agent."""

    fake: FakeDiscord
    guild: str = ""
    support: str = ""
    forum: str = ""
    agents: str = ""
    general: str = ""
    agent_role: str = ""
    admin_role: str = ""
    customer: dict[str, Any] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)
    admin: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, fake: FakeDiscord) -> World:
        w = cls(fake)
        w.guild = fake.add_guild()
        w.support = fake.add_channel(w.guild, "support")
        w.forum = fake.add_channel(w.guild, "help-forum", forum=True)
        w.agents = fake.add_channel(w.guild, "agents")
        w.general = fake.add_channel(w.guild, "general")
        w.agent_role = fake.add_role(w.guild, "agents")
        w.admin_role = fake.add_role(w.guild, "support-admins")
        w.customer = fake.user("carol")
        w.agent = fake.user("alex")
        w.admin = fake.user("ada")
        return w


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    # Point the real client at the fake: REST base and the gateway it first connects to
    # (later connections use READY's resume_gateway_url, which the fake sets to itself).
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = server.base_url + "/api/v10"
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)
    yield server
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved
    await server.close()


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A handler that failed is logged, not raised, by discord.py: fail the test on it."""
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
def world(fake: FakeDiscord) -> World:
    return World.build(fake)


@pytest.fixture
def settings(world: World, redis_keys: Keys) -> Settings:
    return load_settings(
        redis_url=REDIS_URL, redis_prefix=redis_keys.prefix,
        support_channels=[world.support, world.forum], agent_channel=world.agents,
        discord_token="fake-token", discord_admin_roles=[world.admin_role],
        discord_agent_role=world.agent_role, rate_limit=100)


@pytest.fixture
async def start_client(world: World, settings: Settings
                       ) -> AsyncIterator[Callable[..., Awaitable[SupportClient]]]:
    """Start the Discord process (support stack + client) against the fake; stopped after.
    Each call is a fresh process sharing Redis with the earlier ones (a restart)."""
    running: list[tuple[SupportClient, Support, asyncio.Task[None]]] = []

    async def start(answerer: Answerer | None = None, *, message_content: bool = True
                    ) -> SupportClient:
        client, support = build_discord(
            settings.model_copy(update={"discord_message_content": message_content}),
            guild_ready_timeout=0.05)
        if answerer is not None:
            support.bot.answerer = answerer
        await client.login(settings.discord_token)
        task = asyncio.create_task(client.connect(reconnect=True))
        running.append((client, support, task))
        await asyncio.wait_for(client.wait_until_ready(), 10)
        await world.fake.wait_until(lambda: world.guild in world.fake.commands)
        return client

    yield start
    crashed = [t.exception() for _, _, t in running if t.done() and not t.cancelled()
               and t.exception() is not None]
    for client, support, task in running:
        await client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await support.close()
    assert not crashed, f"the client's connection loop crashed: {crashed!r}"


async def settle(fake: FakeDiscord, client: SupportClient) -> None:
    """Wait until the client has processed every event sent so far (its heartbeat reports the
    sequence number) and every message handler those events started has finished."""
    seq = fake.last_seq
    await fake.wait_until(lambda: fake.seen_seq() >= seq)
    await client.idle()

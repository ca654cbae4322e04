"""Assemble a Discord process: the platform-neutral support stack (adapters/wiring.py) plus
the discord.py client and its AgentDesk; adapters/lifecycle.py starts and stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from adapters.discordbot.client import SupportClient
from adapters.discordbot.desk import DiscordAgentDesk
from adapters.lifecycle import Adapter, serve_adapters
from adapters.wiring import Support, build_support
from bot.handoff import AgentDesk
from bot.ports import LLM
from bot.routing import MessageRouter
from bot.settings import Settings

log = logging.getLogger(__name__)


def build_discord(settings: Settings, **client_options: Any) -> tuple[SupportClient, Support]:
    """The client wired to the bot, admin commands and buttons; its desk registered with the
    handoff (the desk needs the client, the client the stack: the mapping is filled last)."""
    desks: dict[str, AgentDesk] = {}
    support = build_support(settings, desks)
    client = SupportClient(support.bot, MessageRouter(support.bot.store, support.live),
                           message_content=settings.discord_message_content,
                           admin=support.admin, buttons=support.interactions, **client_options)
    desks["discord"] = DiscordAgentDesk(client, settings.discord_agent_role)
    return client, support


def discord_adapter(settings: Settings) -> Adapter:
    """Discord, built and ready to start (adapters/lifecycle.py serves it)."""
    client, support = build_discord(settings)
    task: asyncio.Task[None] | None = None

    async def start() -> asyncio.Task[None]:
        nonlocal task
        if not settings.discord_message_content:
            log.warning("discord: message-content intent off: only mentions and DMs are "
                        "answered")
        # Reconnects and resumes on its own; the task ends only when closed or on a fatal
        # error (bad token, intents refused), which lifecycle turns into a process exit.
        task = asyncio.create_task(client.start(settings.discord_token, reconnect=True))
        return task

    async def stop() -> None:
        await client.close()  # waits for replies being written, then disconnects
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task  # its outcome, if it crashed, was reported by serve_adapters

    return Adapter("discord", support, start, stop)


async def run_discord(settings: Settings, stop: asyncio.Event | None = None,
                      llm: LLM | None = None) -> None:
    """`supportbot discord`: serve Discord until `stop` is set (or the task is cancelled),
    with the engine client SUPPORTBOT_LLM names (or `llm`, which the caller closes), then
    drain and close."""
    await serve_adapters("discord", settings, [discord_adapter], stop or asyncio.Event(), llm)

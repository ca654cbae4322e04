"""Assemble a Discord process: the platform-neutral support stack (adapters/wiring.py) plus
the discord.py client and its AgentDesk, and run it until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from adapters.discordbot.client import SupportClient
from adapters.discordbot.desk import DiscordAgentDesk
from adapters.wiring import Support, build_support
from bot.handoff import AgentDesk
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


async def run_discord(settings: Settings) -> None:
    """Connect (reconnecting and resuming on its own) until cancelled or closed."""
    client, support = build_discord(settings)
    if not settings.discord_message_content:
        log.warning("discord: message-content intent off: only mentions and DMs are answered")
    sweeper = asyncio.create_task(support.sweeper.run())
    try:
        async with client:
            await client.start(settings.discord_token, reconnect=True)
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await support.close()

"""The agents' side of Discord (bot/handoff.py's AgentDesk): ticket cards in the agents'
channel with Claim / Resolve / Hand back, reminders, and outboxes to customers' threads.

A card id is "<channel id>/<message id>": editing a message needs both, and the ticket
record keeps only the card id.
"""

from __future__ import annotations

from typing import Any

import discord

from adapters.discordbot.outbox import DiscordOutbox, FixedTarget
from adapters.discordbot.render import NO_MENTIONS, card_kwargs
from bot.live_config import no_agent_channel
from bot.models import ConversationKey
from bot.tickets import TicketCard

DM_WORKSPACE = "dm"  # DMs belong to no guild: their conversations use this workspace


def card_id(channel_id: int, message_id: int) -> str:
    return f"{channel_id}/{message_id}"


def parse_card_id(value: str) -> tuple[int, int]:
    channel, _, message = value.partition("/")
    return int(channel), int(message)


def conversation_channel(key: ConversationKey) -> tuple[int, int | None]:
    """(channel id to post in, guild id) of a conversation: its thread, or the DM."""
    if key.workspace == DM_WORKSPACE:
        return int(key.channel), None
    return int(key.thread), int(key.workspace)


def customer_outbox(client: discord.Client, key: ConversationKey) -> DiscordOutbox:
    channel_id, guild_id = conversation_channel(key)
    return DiscordOutbox(FixedTarget(client.get_partial_messageable(channel_id,
                                                                    guild_id=guild_id)))


class DiscordAgentDesk:
    def __init__(self, client: discord.Client, agent_role: str = "") -> None:
        self.client = client
        self.agent_role = agent_role

    def _channel(self, channel: str) -> discord.PartialMessageable:
        """The agents' channel bot/handoff.py chose for Discord ("": none configured)."""
        if not channel:
            raise ValueError(no_agent_channel("discord"))
        return self.client.get_partial_messageable(int(channel))

    def _ping(self) -> tuple[str, discord.AllowedMentions]:
        """The agents' role mention, allowed to ping that role and nothing else."""
        if not self.agent_role:
            return "", NO_MENTIONS
        role = discord.Object(int(self.agent_role))
        return f"<@&{self.agent_role}> ", discord.AllowedMentions(
            everyone=False, users=False, roles=[role], replied_user=False)

    async def post_card(self, channel: str, card: TicketCard) -> str:
        ping, mentions = self._ping()
        message = await self._channel(channel).send(
            content=f"{ping}New ticket {card.ticket_id}", allowed_mentions=mentions,
            **card_kwargs(card))
        return card_id(message.channel.id, message.id)

    async def update_card(self, card_id: str, card: TicketCard) -> None:
        channel_id, message_id = parse_card_id(card_id)
        message = self.client.get_partial_messageable(channel_id).get_partial_message(message_id)
        # Content is left as posted (no second ping); embed and buttons show the new state.
        await message.edit(allowed_mentions=NO_MENTIONS, **card_kwargs(card))

    async def notify_agents(self, channel: str, text: str, card_id: str = "") -> None:
        ping, mentions = self._ping()
        kwargs: dict[str, Any] = {}
        if card_id:  # a reply to the card, wherever it was posted
            card_channel, message_id = parse_card_id(card_id)
            target = self.client.get_partial_messageable(card_channel)
            kwargs["reference"] = target.get_partial_message(message_id)
            kwargs["mention_author"] = False
        else:
            target = self._channel(channel)
        await target.send(content=f"{ping}{text}", allowed_mentions=mentions, **kwargs)

    def customer_outbox(self, key: ConversationKey) -> DiscordOutbox:
        return customer_outbox(self.client, key)

    async def link(self, key: ConversationKey) -> str:
        channel_id, guild_id = conversation_channel(key)
        return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}"

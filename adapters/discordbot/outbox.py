"""The Outbox for one Discord conversation: a thread, a forum post or a DM.

A reply is one logical message to bot/ but may be several Discord messages (2,000-character
limit); the outbox remembers which, keyed by the first one's id, and edits only the pieces
that changed. A thread for a new question is opened lazily on the first post, so a
duplicate delivery (dropped by the pipeline before it posts) never opens a second one.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import discord

from adapters.discordbot.render import Piece, pieces
from bot.chunks import plan_update
from bot.models import Reply

log = logging.getLogger(__name__)

# Discord's error code for "a thread has already been created for this message".
THREAD_ALREADY_EXISTS = 160004


class Target(Protocol):
    async def channel(self) -> discord.abc.Messageable: ...


class FixedTarget:
    """An existing thread, forum post or DM channel."""

    def __init__(self, channel: discord.abc.Messageable) -> None:
        self._channel = channel

    async def channel(self) -> discord.abc.Messageable:
        return self._channel


class NewThreadTarget:
    """A public thread started from the customer's message, created on first use.

    If an earlier attempt (a crash, a retried delivery) already created it, Discord says so
    and the thread is reused: a thread started from a message has that message's id.
    """

    def __init__(self, client: discord.Client, message: discord.Message, name: str) -> None:
        self._client = client
        self._message = message
        self._name = name
        self._thread: discord.abc.Messageable | None = None

    async def channel(self) -> discord.abc.Messageable:
        if self._thread is None:
            try:
                self._thread = await self._message.create_thread(
                    name=self._name, auto_archive_duration=1440)
            except discord.HTTPException as exc:
                if exc.code != THREAD_ALREADY_EXISTS:
                    raise
                guild_id = self._message.guild.id if self._message.guild else None
                self._thread = self._client.get_partial_messageable(
                    self._message.id, guild_id=guild_id, type=discord.ChannelType.public_thread)
        return self._thread


class DiscordOutbox:
    def __init__(self, target: Target) -> None:
        self._target = target
        self._shown: dict[str, list[tuple[discord.PartialMessage | discord.Message, Piece]]] = {}

    async def post(self, reply: Reply) -> str:
        channel = await self._target.channel()
        sent: list[tuple[discord.PartialMessage | discord.Message, Piece]] = []
        for piece in pieces(reply):
            sent.append((await channel.send(**piece.send_kwargs()), piece))
        message_id = str(sent[0][0].id)
        self._shown[message_id] = sent
        return message_id

    async def edit(self, message_id: str, reply: Reply) -> None:
        shown = self._shown.get(message_id)
        if shown is None:  # not ours (another process posted it): edit that one message
            channel = await self._target.channel()
            shown = [(_partial(channel, int(message_id)), Piece(""))]
        plan = plan_update([p for _, p in shown], pieces(reply))
        for index, piece in plan.edits:
            message, _ = shown[index]
            await message.edit(**piece.send_kwargs())
            shown[index] = (message, piece)
        if plan.posts:
            channel = await self._target.channel()
            for piece in plan.posts:
                shown.append((await channel.send(**piece.send_kwargs()), piece))
        for index in reversed(plan.deletes):
            message, _ = shown.pop(index)
            await message.delete()
        self._shown[message_id] = shown


def _partial(channel: Any, message_id: int) -> discord.PartialMessage:
    return channel.get_partial_message(message_id)  # type: ignore[no-any-return]

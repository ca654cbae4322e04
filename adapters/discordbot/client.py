"""The Discord client: a discord.py `commands.Bot` that turns gateway events into bot calls.

Messages -> `SupportBot.handle` (routing by bot/routing.py; a new question opens a thread),
`/support` -> the admin command handler, buttons -> the interaction handler. The bot/ side
decides everything; this class translates and makes sure Discord's deadlines are met
(interactions are deferred before any work).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from typing import Any

import discord
from discord.ext import commands

from adapters.discordbot.commands import support_group
from adapters.discordbot.desk import DM_WORKSPACE, customer_outbox
from adapters.discordbot.outbox import DiscordOutbox, FixedTarget, NewThreadTarget
from adapters.discordbot.render import NO_MENTIONS, command_reply_kwargs, thread_name
from adapters.discordbot.views import ActionButton
from bot.admin import AdminCommands
from bot.authz import Caller
from bot.interactions import Interactions
from bot.models import ConversationKey, Inbound
from bot.redact import redact
from bot.routing import Arrival, MessageRouter
from bot.service import SupportBot

log = logging.getLogger(__name__)

PLATFORM = "discord"
DM_THREAD = "dm"  # a DM is one conversation, as on Slack


def build_intents(message_content: bool) -> discord.Intents:
    """The smallest set that works. `guilds` brings channels and threads (to tell a support
    channel's thread from any other) and is needed for GUILD_CREATE; `guild_messages` and
    `dm_messages` deliver messages. `message_content` is privileged: without it Discord
    blanks the text of guild messages except those that mention the bot, so only mentions
    and DMs can be answered."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = message_content
    return intents


def conversation_key(channel: Any, guild_id: int | None) -> ConversationKey | None:
    """The conversation a thread or DM holds; None for a plain channel (no conversation)."""
    if guild_id is None or isinstance(channel, discord.DMChannel):
        return ConversationKey(PLATFORM, DM_WORKSPACE, str(channel.id), DM_THREAD)
    if isinstance(channel, discord.Thread):
        return ConversationKey(PLATFORM, str(guild_id), str(channel.parent_id), str(channel.id))
    return None


def caller_of(interaction: discord.Interaction[Any]) -> Caller:
    """Facts about the person behind an interaction; bot/authz.py decides what they may do.
    `interaction.permissions` are the member's resolved permissions in that channel, as
    Discord computed them for this very call, so a role removed a second ago counts."""
    user = interaction.user
    roles = frozenset(str(r.id) for r in getattr(user, "roles", ()) if not r.is_default())
    perms = frozenset(name for name, on in interaction.permissions if on)
    return Caller(platform=PLATFORM, user_id=str(user.id), display_name=user.display_name,
                  workspace=str(interaction.guild_id or DM_WORKSPACE), groups=roles,
                  permissions=perms)


class SupportClient(commands.Bot):
    """`admin` and `buttons` are set after construction when they need this client (the
    handoff's AgentDesk does); until then commands and buttons answer "not available"."""

    def __init__(self, bot: SupportBot, router: MessageRouter, *, message_content: bool = True,
                 admin: AdminCommands | None = None, buttons: Interactions | None = None,
                 **options: Any) -> None:
        # allowed_mentions here is the default for every send and edit: model text can never
        # ping @everyone, a role or a user. Only ticket cards opt in to their role ping.
        super().__init__(command_prefix=commands.when_mentioned,
                         intents=build_intents(message_content),
                         allowed_mentions=NO_MENTIONS, help_command=None, **options)
        self.support_bot = bot
        self.router = router
        self.admin = admin
        self.buttons = buttons
        self._synced_guilds: set[int] = set()
        self._busy: set[asyncio.Task[Any]] = set()  # message handlers still running
        self.outcomes: Counter[str] = Counter()  # what became of each message, for metrics

    # ---- start-up -------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        # Buttons on messages posted before a restart keep working: discord.py matches their
        # custom_id against ActionButton's template, no per-message view registration needed.
        self.add_dynamic_items(ActionButton)

    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self.sync_commands(guild)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.sync_commands(guild)

    async def sync_commands(self, guild: discord.Guild) -> None:
        """Register `/support` for one guild: guild commands show up at once (global ones can
        take an hour). Once per guild per process; a resumed session keeps them."""
        if guild.id in self._synced_guilds:
            return
        self._synced_guilds.add(guild.id)
        group = support_group(self._run_admin)
        self.tree.add_command(group, guild=discord.Object(guild.id), override=True)
        try:
            await self.tree.sync(guild=discord.Object(guild.id))
        except discord.HTTPException:
            self._synced_guilds.discard(guild.id)
            log.exception("could not sync /support in guild %s", guild.id)

    # ---- messages -------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        # Never call process_commands: prefix commands are not used, and a mention must
        # reach the support pipeline rather than be read as a command.
        task = asyncio.current_task()
        if task is not None:
            self._busy.add(task)
        try:
            await self.handle_message(message)
        except Exception:
            log.exception("handling message %s failed", message.id)
        finally:
            self._busy.discard(task)  # type: ignore[arg-type]

    async def idle(self) -> None:
        """Wait until every message handler that has started has finished (shutdown, tests)."""
        current = asyncio.current_task()
        while pending := [t for t in self._busy if t is not current]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        await self.idle()  # let answers being written finish before the connection goes
        await super().close()

    async def handle_message(self, message: discord.Message) -> None:
        me = self.user
        if me is None or message.author.bot or message.author.id == me.id:
            return  # bots (itself included) are never answered: no loops
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return  # joins, pins, thread-created notices, ...
        text = strip_mention(message.content, me.id)
        if not text:
            return  # nothing to answer (or content withheld: no message-content intent)
        channel = await self._resolve_channel(message)
        guild_id = message.guild.id if message.guild else None
        mentioned = me.id in message.raw_mentions
        key = conversation_key(channel, guild_id)
        if key is None:  # a top-level message: its conversation is the thread it will open
            assert guild_id is not None
            key = ConversationKey(PLATFORM, str(guild_id), str(channel.id), str(message.id))
            arrival = Arrival(channel=str(channel.id), mentions_bot=mentioned)
            target: FixedTarget | NewThreadTarget = NewThreadTarget(
                self, message, thread_name(redact(text)))
        else:
            is_dm = key.workspace == DM_WORKSPACE
            arrival = Arrival(channel=key.channel, is_dm=is_dm, mentions_bot=mentioned,
                              in_thread=not is_dm)
            target = FixedTarget(channel)
        if not await self.router.accepts(arrival, key):
            self.outcomes["not_routed"] += 1
            return
        inbound = Inbound(platform=PLATFORM, workspace=key.workspace, channel=key.channel,
                          thread=key.thread, user=str(message.author.id), text=text,
                          event_id=str(message.id), ts=message.created_at.timestamp(),
                          user_name=message.author.display_name, is_dm=arrival.is_dm)
        outcome = await self.support_bot.handle(inbound, DiscordOutbox(target))
        self.outcomes[outcome] += 1

    async def _resolve_channel(self, message: discord.Message) -> Any:
        """The message's channel with its type known. A thread missing from the cache (say,
        right after a restart) arrives as a PartialMessageable; one REST call tells us its
        parent."""
        channel = message.channel
        if isinstance(channel, discord.PartialMessageable) and message.guild is not None:
            fetched = self.get_channel(channel.id) or await self.fetch_channel(channel.id)
            return fetched
        return channel

    # ---- interactions ---------------------------------------------------------------------

    async def _run_admin(self, interaction: discord.Interaction[Any], text: str) -> None:
        # Defer first: Discord drops an interaction not answered within 3 seconds.
        await interaction.response.defer(ephemeral=True, thinking=True)
        if self.admin is None:
            await interaction.followup.send("Admin commands are not available here.",
                                            ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        reply = await self.admin.handle(caller_of(interaction), text,
                                        _command_channel(interaction.channel))
        await interaction.followup.send(**command_reply_kwargs(reply), ephemeral=True)

    async def on_button(self, interaction: discord.Interaction[Any], action: str,
                        value: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        if self.buttons is None:
            await interaction.followup.send("That button is not available here.",
                                            ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        key = conversation_key(interaction.channel, interaction.guild_id)
        outbox = customer_outbox(self, key) if key is not None else None
        reply = await self.buttons.handle(caller_of(interaction), action, value,
                                          conversation=key, outbox=outbox)
        await interaction.followup.send(**command_reply_kwargs(reply), ephemeral=True)


def _command_channel(channel: Any) -> str:
    """The channel a command concerns (`/support pause`): a thread's parent channel."""
    if isinstance(channel, discord.Thread):
        return str(channel.parent_id)
    return str(channel.id) if channel is not None else ""


def strip_mention(text: str, user_id: int) -> str:
    return re.sub(rf"<@!?{user_id}>", "", text).strip()




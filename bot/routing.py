"""Which arriving messages the bot takes up, whatever the platform.

Adapters describe a message as an `Arrival` (where it came from, whether it names the bot);
the router decides. Shared so Slack and Discord agree on the rules:

- direct messages and messages that mention the bot: always;
- anything in a support channel (new questions and their thread replies); the channels are
  live config (`/support config set support_channels ...`), seen by every process;
- a thread reply elsewhere only when the bot already holds a conversation for that thread
  (a thread the bot was mentioned into continues without a fresh mention).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.live_config import LiveConfig
from bot.models import ConversationKey
from bot.ports import ConversationStore


@dataclass(frozen=True)
class Arrival:
    channel: str
    is_dm: bool = False
    mentions_bot: bool = False
    in_thread: bool = False  # a reply inside an existing thread, not a thread root


class MessageRouter:
    def __init__(self, store: ConversationStore, live: LiveConfig) -> None:
        self.store = store
        self.live = live

    async def is_support_channel(self, channel: str) -> bool:
        return channel in (await self.live.snapshot()).support_channels

    async def accepts(self, arrival: Arrival, key: ConversationKey) -> bool:
        if arrival.is_dm or arrival.mentions_bot or await self.is_support_channel(
                arrival.channel):
            return True
        if not arrival.in_thread:
            return False
        # One cheap read: a conversation the bot knows has stored state or turns.
        conv = await self.store.load(key, max_turns=1)
        return bool(conv.turns or conv.fields)

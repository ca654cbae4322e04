"""SlackAgentDesk: the agents' side of Slack for bot/handoff.py (its AgentDesk Protocol).

A card id is "<channel>/<ts>" of the card message, so a card can be updated (and replied to
in its thread, for reminders) by any process, after a restart too.
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.cards import card_message
from adapters.slack.events import DM_THREAD
from adapters.slack.outbox import SlackOutbox
from bot.live_config import no_agent_channel
from bot.models import ConversationKey
from bot.tickets import TicketCard

log = logging.getLogger(__name__)


def card_id(channel: str, ts: str) -> str:
    return f"{channel}/{ts}"


def parse_card_id(value: str) -> tuple[str, str]:
    channel, _, ts = value.partition("/")
    if not channel or not ts:
        raise ValueError(f"not a Slack card id: {value!r}")
    return channel, ts


def reply_thread(key: ConversationKey) -> str | None:
    """Where the customer's conversation lives: its thread, or the DM itself."""
    return None if key.thread == DM_THREAD else key.thread


class SlackAgentDesk:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    def _channel(self, channel: str) -> str:
        """The agents' channel bot/handoff.py chose for Slack ("": none configured)."""
        if not channel:
            raise ValueError(no_agent_channel("slack"))
        return channel

    async def post_card(self, channel: str, card: TicketCard) -> str:
        target = self._channel(channel)
        response = await self.client.chat_postMessage(channel=target, **card_message(card))
        return card_id(str(response["channel"] or target), str(response["ts"]))

    async def update_card(self, card_id: str, card: TicketCard) -> None:
        channel, ts = parse_card_id(card_id)
        await self.client.chat_update(channel=channel, ts=ts, **card_message(card))

    async def notify_agents(self, channel: str, text: str, card_id: str = "") -> None:
        if card_id:  # a reminder goes in the card's thread, where the ticket's story is
            card_channel, ts = parse_card_id(card_id)
            await self.client.chat_postMessage(channel=card_channel, thread_ts=ts, text=text)
        else:
            await self.client.chat_postMessage(channel=self._channel(channel), text=text)

    def customer_outbox(self, key: ConversationKey) -> SlackOutbox:
        return SlackOutbox(self.client, key.channel, reply_thread(key))

    async def link(self, key: ConversationKey) -> str:
        thread = reply_thread(key)
        if thread is None:
            return ""  # a DM has no message to point at that agents could open
        try:
            response = await self.client.chat_getPermalink(channel=key.channel,
                                                           message_ts=thread)
        except SlackApiError as exc:
            log.warning("slack: no permalink for %s: %s", key.id, exc)
            return ""
        return str(response.get("permalink") or "")

"""Translate Slack `message` / `app_mention` events into the bot's Inbound, or nothing.

Pure functions, no I/O: what to ignore (bots, the bot itself, joins, edits, deletes), where a
reply goes (the thread under a channel message, the DM itself) and the delivery id.

The delivery id is channel + message ts, never Slack's envelope or event id: a retried event
and the `message` + `app_mention` pair Slack sends for one mention all carry the same channel
and ts, so the bot's dedup sees one message however many times it arrives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.models import Inbound
from bot.routing import Arrival

PLATFORM = "slack"
DM_THREAD = "dm"  # conversation thread id for top-level DM messages: the DM is one conversation

# Message subtypes that are a person saying something; every other subtype (channel_join,
# message_changed, message_deleted, bot_message, ...) is ignored.
_SPOKEN_SUBTYPES = frozenset({None, "thread_broadcast", "file_share", "me_message"})


@dataclass(frozen=True)
class SlackMessage:
    """A customer message located in Slack: the Inbound plus where the reply goes."""

    inbound: Inbound
    arrival: Arrival
    reply_thread_ts: str | None  # None: reply at the top level of a DM


def delivery_id(channel: str, ts: str) -> str:
    return f"{channel}-{ts}"


def mentions(text: str, user_id: str) -> bool:
    return f"<@{user_id}>" in text or f"<@{user_id}|" in text


def strip_mention(text: str, user_id: str) -> str:
    return re.sub(rf"<@{re.escape(user_id)}(\|[^>]*)?>", "", text).strip()


def is_from_bot(event: Mapping[str, Any], bot_user_id: str) -> bool:
    return bool(event.get("bot_id")) or event.get("user") == bot_user_id \
        or event.get("subtype") == "bot_message"


def translate(event: Mapping[str, Any], team_id: str, bot_user_id: str) -> SlackMessage | None:
    """The Inbound for a customer's message event, or None when the bot should ignore it."""
    if event.get("type") not in ("message", "app_mention"):
        return None
    if event.get("subtype") not in _SPOKEN_SUBTYPES or event.get("hidden"):
        return None
    if is_from_bot(event, bot_user_id):
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    raw_text = str(event.get("text") or "")
    if not (user and channel and ts):
        return None
    text = strip_mention(raw_text, bot_user_id)
    if not text:
        return None
    thread_ts = event.get("thread_ts")
    in_thread = bool(thread_ts) and thread_ts != ts
    is_dm = event.get("channel_type") == "im" or str(channel).startswith("D")
    if is_dm and not in_thread:
        thread, reply_thread_ts = DM_THREAD, None
    else:
        thread = str(thread_ts or ts)
        reply_thread_ts = thread
    inbound = Inbound(
        platform=PLATFORM, workspace=team_id, channel=str(channel),
        thread=thread, user=str(user), text=text, event_id=delivery_id(str(channel), str(ts)),
        ts=_float_ts(str(ts)), is_dm=is_dm)
    arrival = Arrival(channel=str(channel), is_dm=is_dm,
                      mentions_bot=mentions(raw_text, bot_user_id), in_thread=in_thread)
    return SlackMessage(inbound, arrival, reply_thread_ts)


def _float_ts(ts: str) -> float:
    try:
        return float(ts)
    except ValueError:
        return 0.0

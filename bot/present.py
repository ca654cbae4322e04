"""Platform-neutral presentation choices the adapters share: which feedback buttons a reply
shows, what they say and what they carry. The adapters only turn these into widgets.

(Ticket-card buttons come with their labels in bot.tickets.CardButton.)
"""

from __future__ import annotations

from bot.actions import ANSWER_BUTTONS, Action
from bot.models import Reply, ReplyKind

ANSWER_LABELS: dict[str, str] = {
    Action.HELPFUL: "Helpful",
    Action.NOT_HELPFUL: "Not helpful",
    Action.TALK_TO_HUMAN: "Talk to a person",
}


def buttons_for(reply: Reply) -> tuple[str, ...]:
    """The buttons a reply shows: its own, or the feedback buttons on every final answer."""
    if reply.buttons:
        return reply.buttons
    if reply.kind is ReplyKind.ANSWER:
        return tuple(ANSWER_BUTTONS)
    return ()


def answer_button_value(reply: Reply) -> str:
    """What the feedback buttons carry (see bot/handoff.py): the cited article id, or ""."""
    return reply.citations[0].article_id if reply.citations else ""


def button_label(action_id: str) -> str:
    return ANSWER_LABELS.get(action_id, action_id)

"""Button action ids shared by every adapter. A button's value carries the ticket or message
it acts on; the adapters only render and route, the meaning lives in bot/."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    HELPFUL = "sb_helpful"
    NOT_HELPFUL = "sb_not_helpful"
    TALK_TO_HUMAN = "sb_talk_to_human"
    CLAIM = "sb_claim"
    RESOLVE = "sb_resolve"
    HANDBACK = "sb_handback"


ANSWER_BUTTONS = (Action.HELPFUL, Action.NOT_HELPFUL, Action.TALK_TO_HUMAN)
TICKET_BUTTONS = (Action.CLAIM, Action.RESOLVE, Action.HANDBACK)

"""Tickets: one escalated conversation waiting for (or owned by) a human agent.

The ticket record is the arbiter of every human-handoff race: claim, resolve, hand back,
cancel and reminders are compare-and-set moves on the ticket's state, done atomically by the
TicketStore (a Lua script in Redis, plain code under one event loop in memory). Whoever wins
the ticket move then changes the conversation state; the loser is told why.

`TicketCard` is the platform-neutral view of a ticket that the Slack and Discord adapters
render into blocks / an embed with a view of buttons.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from bot.actions import Action
from bot.models import ConversationKey, Turn
from bot.policy import describe_reason


class TicketState(StrEnum):
    OPEN = "open"  # waiting for an agent to claim it
    CLAIMED = "claimed"  # an agent owns the conversation
    RESOLVED = "resolved"  # closed by an agent, with a note
    HANDED_BACK = "handed_back"  # the bot took the conversation back
    CANCELLED = "cancelled"  # the customer no longer needed a person

    @property
    def is_active(self) -> bool:
        return self in (TicketState.OPEN, TicketState.CLAIMED)


ACTIVE_STATES = (TicketState.OPEN, TicketState.CLAIMED)


@dataclass(frozen=True)
class Ticket:
    """Everything an agent needs to pick a conversation up, stored as one JSON-able record."""

    id: str
    conversation: ConversationKey
    customer: str  # platform user id of the customer
    reason: str  # decision reason code that caused the escalation ("low_confidence", ...)
    created: float
    link: str = ""  # permalink to the customer's thread (from AgentDesk.link)
    customer_name: str = ""
    summary: tuple[str, ...] = ()  # 3-5 lines for the card
    transcript: tuple[Turn, ...] = ()  # the conversation up to the escalation (redacted)
    state: TicketState = TicketState.OPEN
    agent: str = ""  # platform user id of the agent who claimed it
    agent_name: str = ""
    claimed_at: float = 0.0
    closed_at: float = 0.0
    closed_by: str = ""
    note: str = ""  # resolution note
    card_id: str = ""  # message id of the card in the agents' channel
    reminders: int = 0  # reminders already sent for this ticket (sweeper CAS counter)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id, "conversation": self.conversation.id, "customer": self.customer,
            "reason": self.reason, "created": self.created, "link": self.link,
            "customer_name": self.customer_name, "summary": list(self.summary),
            "transcript": [t.to_json() for t in self.transcript], "state": str(self.state),
            "agent": self.agent, "agent_name": self.agent_name, "claimed_at": self.claimed_at,
            "closed_at": self.closed_at, "closed_by": self.closed_by, "note": self.note,
            "card_id": self.card_id, "reminders": self.reminders,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Ticket:
        def text(name: str) -> str:
            return str(data.get(name, "") or "")

        def number(name: str) -> float:
            return float(str(data.get(name, 0) or 0))

        summary = data.get("summary") or []
        transcript = data.get("transcript") or []
        assert isinstance(summary, list) and isinstance(transcript, list)
        return cls(
            id=text("id"), conversation=ConversationKey.parse(text("conversation")),
            customer=text("customer"), reason=text("reason"), created=number("created"),
            link=text("link"), customer_name=text("customer_name"),
            summary=tuple(str(s) for s in summary),
            transcript=tuple(Turn.from_json(t) for t in transcript),
            state=TicketState(text("state") or TicketState.OPEN), agent=text("agent"),
            agent_name=text("agent_name"), claimed_at=number("claimed_at"),
            closed_at=number("closed_at"), closed_by=text("closed_by"), note=text("note"),
            card_id=text("card_id"), reminders=int(number("reminders")),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str) -> Ticket:
        return cls.from_json(json.loads(raw))


@dataclass(frozen=True)
class ClaimResult:
    """won: this caller now owns the ticket. Otherwise `ticket` says who has it (or that it is
    closed) and is None only when no such ticket exists."""

    won: bool
    ticket: Ticket | None


@dataclass(frozen=True)
class StoredTranscript:
    """A human-resolved conversation kept for review and fine-tuning (redacted turns)."""

    ticket_id: str
    reason: str
    resolved_at: float
    turns: tuple[Turn, ...]
    names: tuple[str, ...] = ()  # display names seen in it, masked again on export

    def dumps(self) -> str:
        return json.dumps({"ticket_id": self.ticket_id, "reason": self.reason,
                           "resolved_at": self.resolved_at, "names": list(self.names),
                           "turns": [t.to_json() for t in self.turns]}, ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str) -> StoredTranscript:
        data = json.loads(raw)
        return cls(ticket_id=str(data["ticket_id"]), reason=str(data["reason"]),
                   resolved_at=float(data["resolved_at"]),
                   turns=tuple(Turn.from_json(t) for t in data["turns"]),
                   names=tuple(str(n) for n in data.get("names", [])))


class TicketStore(Protocol):
    """Tickets, their atomic state moves, kept transcripts and the sweeper's lease.

    Implementations: bot/tickets_memory.py (one process), bot/tickets_redis.py (shared).
    tests/test_tickets_contract.py runs the same contract against both.
    """

    async def next_id(self) -> str:
        """A new short ticket id agents can type ("T17"), unique across processes."""
        ...

    async def create(self, ticket: Ticket) -> None:
        """Store a new OPEN ticket and index it among the active tickets."""
        ...

    async def get(self, ticket_id: str) -> Ticket | None: ...

    async def active(self) -> list[Ticket]:
        """OPEN and CLAIMED tickets, oldest first."""
        ...

    async def claim(self, ticket_id: str, agent: str, agent_name: str,
                    now: float) -> ClaimResult:
        """OPEN -> CLAIMED by agent, atomically: of two concurrent claims exactly one wins.
        A repeated claim by the agent who already holds it also counts as won."""
        ...

    async def close(self, ticket_id: str, to: TicketState, now: float, by: str = "",
                    note: str = "", allowed_from: Sequence[TicketState] = ACTIVE_STATES,
                    ) -> Ticket | None:
        """Move an active ticket to a closed state (RESOLVED, HANDED_BACK, CANCELLED).
        Returns the updated ticket, or None when it was not in allowed_from (or unknown)."""
        ...

    async def set_card(self, ticket_id: str, card_id: str) -> None: ...

    async def mark_reminded(self, ticket_id: str, seen_reminders: int) -> bool:
        """Count one more reminder only if the ticket is still OPEN and nobody counted it
        since we read `seen_reminders`: the sweeper's guard against double-sending."""
        ...

    async def keep_transcript(self, transcript: StoredTranscript, ttl_s: int) -> None: ...

    async def transcripts(self) -> list[StoredTranscript]:
        """Kept transcripts that have not expired, oldest first."""
        ...

    async def lease(self, owner: str, ttl_s: float) -> bool:
        """Take or renew the one sweeper lease; True while `owner` holds it."""
        ...


def normalize_ticket_id(text: str) -> str:
    """What an agent types ("#t17", "T17 ") -> the stored id ("T17")."""
    return text.strip().lstrip("#").upper()


# ---- the platform-neutral card ---------------------------------------------------------------

BUTTON_LABELS = {Action.CLAIM: "Claim", Action.RESOLVE: "Resolve", Action.HANDBACK: "Hand back"}
BUTTON_STYLES = {Action.CLAIM: "primary", Action.RESOLVE: "danger", Action.HANDBACK: ""}


@dataclass(frozen=True)
class CardButton:
    action: Action  # the action id the adapter sends back to Interactions.handle
    label: str
    value: str  # the ticket id
    style: str = ""  # "primary" | "danger" | "" (adapters map to their own styles)


@dataclass(frozen=True)
class TicketCard:
    """A ticket as agents see it. Slack: header + section(lines) + fields + actions;
    Discord: an embed (title, description=lines, fields) + a view of buttons."""

    ticket_id: str
    title: str
    lines: tuple[str, ...]
    fields: tuple[tuple[str, str], ...]
    buttons: tuple[CardButton, ...]
    link: str = ""
    state: TicketState = TicketState.OPEN
    color: str = field(default="#e8a33d")  # hex, by state: open amber, claimed blue, closed grey


_COLORS = {TicketState.OPEN: "#e8a33d", TicketState.CLAIMED: "#3d7be8"}


def ticket_card(ticket: Ticket) -> TicketCard:
    """Build the card for the ticket's current state (buttons only while it is active)."""
    if ticket.state is TicketState.OPEN:
        actions: tuple[Action, ...] = (Action.CLAIM, Action.RESOLVE, Action.HANDBACK)
        status = "waiting for an agent"
    elif ticket.state is TicketState.CLAIMED:
        actions = (Action.RESOLVE, Action.HANDBACK)
        status = f"claimed by {ticket.agent_name or ticket.agent}"
    else:
        actions = ()
        who = f" by {ticket.closed_by}" if ticket.closed_by else ""
        status = f"{ticket.state.replace('_', ' ')}{who}"
    fields: list[tuple[str, str]] = [
        ("Customer", ticket.customer_name or ticket.customer),
        ("Reason", f"{describe_reason(ticket.reason)} ({ticket.reason})"),
        ("Status", status),
    ]
    if ticket.note:
        fields.append(("Note", ticket.note))
    return TicketCard(
        ticket_id=ticket.id,
        title=f"Ticket {ticket.id}: {ticket.customer_name or ticket.customer} needs a person",
        lines=ticket.summary,
        fields=tuple(fields),
        buttons=tuple(CardButton(a, BUTTON_LABELS[a], ticket.id, BUTTON_STYLES[a])
                      for a in actions),
        link=ticket.link,
        state=ticket.state,
        color=_COLORS.get(ticket.state, "#8a8a8a"),
    )


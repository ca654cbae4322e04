"""In-memory TicketStore for a single process (no Redis URL). Every method runs to completion
without awaiting, so under one event loop each compare-and-set is atomic."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

from bot.ports import Clock, SystemClock
from bot.tickets import (
    ACTIVE_STATES,
    ClaimResult,
    StoredTranscript,
    Ticket,
    TicketState,
)


class MemoryTicketStore:
    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._seq = itertools.count(1)
        self._tickets: dict[str, Ticket] = {}
        self._transcripts: dict[str, tuple[float, StoredTranscript]] = {}  # id -> (expiry, t)
        self._lease: tuple[str, float] = ("", 0.0)  # owner, expiry

    async def next_id(self) -> str:
        return f"T{next(self._seq)}"

    async def create(self, ticket: Ticket) -> None:
        if ticket.id in self._tickets:
            raise ValueError(f"ticket {ticket.id} already exists")
        self._tickets[ticket.id] = ticket

    async def get(self, ticket_id: str) -> Ticket | None:
        return self._tickets.get(ticket_id)

    async def active(self) -> list[Ticket]:
        return sorted((t for t in self._tickets.values() if t.state.is_active),
                      key=lambda t: t.created)

    async def claim(self, ticket_id: str, agent: str, agent_name: str,
                    now: float) -> ClaimResult:
        ticket = self._tickets.get(ticket_id)
        if ticket is None:
            return ClaimResult(False, None)
        if ticket.state is TicketState.CLAIMED and ticket.agent == agent:
            return ClaimResult(True, ticket)
        if ticket.state is not TicketState.OPEN:
            return ClaimResult(False, ticket)
        ticket = replace(ticket, state=TicketState.CLAIMED, agent=agent, agent_name=agent_name,
                         claimed_at=now)
        self._tickets[ticket_id] = ticket
        return ClaimResult(True, ticket)

    async def close(self, ticket_id: str, to: TicketState, now: float, by: str = "",
                    note: str = "", allowed_from: Sequence[TicketState] = ACTIVE_STATES,
                    ) -> Ticket | None:
        ticket = self._tickets.get(ticket_id)
        if ticket is None or ticket.state not in allowed_from:
            return None
        ticket = replace(ticket, state=to, closed_at=now, closed_by=by,
                         note=note or ticket.note)
        self._tickets[ticket_id] = ticket
        return ticket

    async def set_card(self, ticket_id: str, card_id: str) -> None:
        if ticket_id in self._tickets:
            self._tickets[ticket_id] = replace(self._tickets[ticket_id], card_id=card_id)

    async def mark_reminded(self, ticket_id: str, seen_reminders: int) -> bool:
        ticket = self._tickets.get(ticket_id)
        if ticket is None or ticket.state is not TicketState.OPEN \
                or ticket.reminders != seen_reminders:
            return False
        self._tickets[ticket_id] = replace(ticket, reminders=seen_reminders + 1)
        return True

    async def keep_transcript(self, transcript: StoredTranscript, ttl_s: int) -> None:
        self._transcripts[transcript.ticket_id] = (self._clock.now() + ttl_s, transcript)

    async def transcripts(self) -> list[StoredTranscript]:
        now = self._clock.now()
        live = [(exp, t) for exp, t in self._transcripts.values() if exp > now]
        return [t for _, t in sorted(live, key=lambda item: item[1].resolved_at)]

    async def lease(self, owner: str, ttl_s: float) -> bool:
        holder, expiry = self._lease
        now = self._clock.now()
        if holder == owner or expiry <= now:
            self._lease = (owner, now + ttl_s)
            return True
        return False

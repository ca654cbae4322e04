"""One TicketStore contract, run against the in-memory store and the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.keys import Keys
from bot.models import ConversationKey, Turn
from bot.tickets import StoredTranscript, Ticket, TicketState, TicketStore
from bot.tickets_memory import MemoryTicketStore
from bot.tickets_redis import RedisTicketStore
from tests.conftest import REDIS_URL
from tests.handoff_fakes import FakeClock

KEY = ConversationKey("slack", "T1", "C1", "1700000000.0001")


@pytest.fixture(params=["memory", "redis"])
async def tickets(request: pytest.FixtureRequest, redis_keys: Keys
                  ) -> AsyncIterator[TicketStore]:
    if request.param == "memory":
        yield MemoryTicketStore(FakeClock())
    else:
        client = aioredis.from_url(REDIS_URL, decode_responses=True)
        yield RedisTicketStore(client, redis_keys)
        await client.aclose()


async def new_ticket(store: TicketStore, created: float = 100.0) -> Ticket:
    ticket = Ticket(id=await store.next_id(), conversation=KEY, customer="U1",
                    customer_name="Ann", reason="low_confidence", created=created,
                    link="https://x/1", summary=("wants a refund", "paid twice"),
                    transcript=(Turn("customer", "héllo ✓", 99.5, user="U1"),))
    await store.create(ticket)
    return ticket


async def test_ticket_round_trips_and_ids_are_unique(tickets: TicketStore) -> None:
    a = await new_ticket(tickets, 200.0)
    b = await new_ticket(tickets, 100.0)
    assert a.id != b.id
    assert await tickets.get(a.id) == a
    assert await tickets.get("T999999") is None
    assert [t.id for t in await tickets.active()] == [b.id, a.id]  # oldest first
    with pytest.raises(ValueError, match="already exists"):
        await tickets.create(a)


async def test_concurrent_claims_have_exactly_one_winner(tickets: TicketStore) -> None:
    t = await new_ticket(tickets)
    results = await asyncio.gather(*[tickets.claim(t.id, f"A{i}", f"Agent {i}", 5.0)
                                     for i in range(6)])
    winners = [r for r in results if r.won]
    assert len(winners) == 1
    holder = winners[0].ticket
    assert holder is not None and holder.state is TicketState.CLAIMED
    for loser in (r for r in results if not r.won):
        assert loser.ticket is not None and loser.ticket.agent == holder.agent
    again = await tickets.claim(t.id, holder.agent, holder.agent_name, 6.0)
    assert again.won  # the holder claiming twice is not an error
    assert (await tickets.claim("T404", "A1", "x", 1.0)).ticket is None


async def test_close_is_compare_and_set(tickets: TicketStore) -> None:
    t = await new_ticket(tickets)
    assert await tickets.close(t.id, TicketState.CANCELLED, 7.0,
                               allowed_from=[TicketState.CLAIMED]) is None
    closed = await tickets.close(t.id, TicketState.RESOLVED, 7.0, by="Bea", note="refunded")
    assert closed is not None and closed.state is TicketState.RESOLVED
    assert (closed.closed_by, closed.note, closed.closed_at) == ("Bea", "refunded", 7.0)
    assert await tickets.close(t.id, TicketState.HANDED_BACK, 8.0) is None
    assert await tickets.active() == []
    assert not (await tickets.claim(t.id, "A1", "x", 9.0)).won


async def test_reminder_counted_once_and_only_while_open(tickets: TicketStore) -> None:
    t = await new_ticket(tickets)
    first = await asyncio.gather(tickets.mark_reminded(t.id, 0), tickets.mark_reminded(t.id, 0))
    assert sorted(first) == [False, True]
    await tickets.set_card(t.id, "card7")
    got = await tickets.get(t.id)
    assert got is not None and got.reminders == 1 and got.card_id == "card7"
    await tickets.claim(t.id, "A1", "x", 1.0)
    assert not await tickets.mark_reminded(t.id, 1)


async def test_transcripts_are_kept(tickets: TicketStore) -> None:
    kept = StoredTranscript("T1", "low_confidence", 50.0,
                            (Turn("customer", "hi", 1.0), Turn("agent", "hello", 2.0)), ("Ann",))
    await tickets.keep_transcript(kept, ttl_s=3600)
    assert await tickets.transcripts() == [kept]


async def test_lease_has_one_holder_until_it_expires(tickets: TicketStore) -> None:
    assert await tickets.lease("p1", 0.3)
    assert not await tickets.lease("p2", 0.3)
    assert await tickets.lease("p1", 0.3)  # renewal by the holder
    if isinstance(tickets, MemoryTicketStore):
        tickets._clock.advance(1.0)  # type: ignore[attr-defined]
    else:
        await asyncio.sleep(0.35)
    assert await tickets.lease("p2", 0.3)
    assert not await tickets.lease("p1", 0.3)

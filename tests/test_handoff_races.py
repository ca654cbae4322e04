"""Handoff races against the real Redis, with two bot "processes" (separate clients) sharing
one key prefix, as two adapter processes would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
import redis.asyncio as aioredis

from bot.keys import Keys
from bot.models import ConversationState, Inbound, Reply, ReplyKind, Turn
from bot.ports import Answer, PartialSink
from bot.service import WITHDRAWN_TEXT, Outcome
from bot.sweeper import Sweeper
from bot.tickets import TicketState
from tests.conftest import REDIS_URL, RecordingOutbox
from tests.handoff_fakes import FakeClock, RecordingDesk, Stack, make_stack, msg

KEY = msg("", "x").key


@pytest.fixture
async def clients() -> AsyncIterator[list[aioredis.Redis]]:
    made = [aioredis.from_url(REDIS_URL, decode_responses=True) for _ in range(2)]
    yield made
    for c in made:
        await c.aclose()


@pytest.fixture
def pair(clients: list[aioredis.Redis], redis_keys: Keys) -> tuple[Stack, Stack]:
    clock, desk = FakeClock(), RecordingDesk()
    return (make_stack("redis", redis_keys, client=clients[0], clock=clock, desk=desk),
            make_stack("redis", redis_keys, client=clients[1], clock=clock, desk=desk))


async def waiting_ticket(stack: Stack) -> str:
    assert await stack.bot.handle(msg("what is the meaning of life", "e1"), RecordingOutbox()) \
        is Outcome.ESCALATED
    return (await stack.store.load(KEY)).fields["ticket"]


async def test_two_concurrent_claims_one_wins_other_told_who(pair: tuple[Stack, Stack]) -> None:
    a, b = pair
    ticket_id = await waiting_ticket(a)
    ra, rb = await asyncio.gather(a.handoff.claim(ticket_id, "A1", "Bea"),
                                  b.handoff.claim(ticket_id, "A2", "Cy"))
    assert sorted([ra.ok, rb.ok]) == [False, True]
    winner, loser = (ra, rb) if ra.ok else (rb, ra)
    assert winner.ticket is not None
    assert f"already claimed by {winner.ticket.agent_name}" in loser.message
    joined = [t for t in a.desk.customer_texts(KEY) if "has joined" in t]
    assert joined == [f"{winner.ticket.agent_name} has joined the conversation."]
    conv = await a.store.load(KEY)
    assert conv.state is ConversationState.HUMAN and conv.fields["agent"] == winner.ticket.agent


async def test_customer_message_during_a_claim_is_recorded_not_answered(
        pair: tuple[Stack, Stack]) -> None:
    a, b = pair
    ticket_id = await waiting_ticket(a)
    outbox = RecordingOutbox()
    claim, outcome = await asyncio.gather(
        b.handoff.claim(ticket_id, "A1", "Bea"),
        a.bot.handle(msg("How do I reset my password?", "e2"), outbox))
    assert claim.ok and outcome is Outcome.RECORDED
    assert outbox.log == []
    conv = await a.store.load(KEY)
    assert conv.state is ConversationState.HUMAN
    assert [t.text for t in conv.turns if t.role == "customer"][-1] == \
        "How do I reset my password?"


class SlowAnswerer:
    """Streams ten words, one every 20 ms, then answers with all of them."""

    final = " ".join(f"w{i}" for i in range(10))

    async def answer(self, inbound: Inbound, history: Sequence[Turn],
                     sink: PartialSink | None = None) -> Answer:
        text = ""
        for i in range(10):
            text = f"{text} w{i}".strip()
            if sink is not None:
                await sink(text)
            await asyncio.sleep(0.02)
        return Answer(Reply(self.final), escalate=False, reason="answered")


class StartedOutbox(RecordingOutbox):
    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()

    async def post(self, reply: Reply) -> str:
        self.started.set()
        return await super().post(reply)


async def test_claim_while_the_bot_streams_stops_the_answer(
        clients: list[aioredis.Redis], redis_keys: Keys) -> None:
    clock, desk = FakeClock(), RecordingDesk()
    a = make_stack("redis", redis_keys, SlowAnswerer(), client=clients[0], clock=clock,
                   desk=desk)
    b = make_stack("redis", redis_keys, client=clients[1], clock=clock, desk=desk)
    outbox = StartedOutbox()
    task = asyncio.create_task(a.bot.handle(msg("explain my invoice", "e1"), outbox))
    await outbox.started.wait()  # the answer has started streaming
    # The customer presses "Talk to a person" on an earlier answer; an agent claims at once.
    ticket = await b.handoff.escalate(KEY, "U1", "Ann", "asked_for_human", RecordingOutbox())
    assert ticket is not None
    assert (await b.handoff.claim(ticket.id, "A1", "Bea")).ok
    ops_at_claim = len(outbox.log)
    assert await task is Outcome.SUPERSEDED
    # The stream stopped as soon as the conversation left the bot: the half-written answer
    # was withdrawn (at most once more touched, by an edit already in flight) and nothing
    # of the bot's answer came after.
    after = outbox.log[ops_at_claim:]
    assert len(after) <= 1 and all(r.text == WITHDRAWN_TEXT for _, _, r in after)
    assert outbox.log[-1][2].text == WITHDRAWN_TEXT
    assert [r.kind for _, _, r in outbox.log[:-1]] == [ReplyKind.PARTIAL] * (len(outbox.log) - 1)
    assert all(SlowAnswerer.final not in r.text for _, _, r in outbox.log)
    assert not any(t.role == "bot" and t.text == SlowAnswerer.final
                   for t in (await a.store.load(KEY)).turns)
    assert (await a.store.load(KEY)).state is ConversationState.HUMAN


async def test_hand_back_during_a_waiting_timeout(pair: tuple[Stack, Stack]) -> None:
    a, b = pair
    ticket_id = await waiting_ticket(a)
    a.clock.advance(11 * 60)
    sent, result = await asyncio.gather(b.handoff.sweep(), a.handoff.hand_back(ticket_id, "Bea"))
    assert result.ok and sent in (0, 1)
    ticket = await a.tickets.get(ticket_id)
    assert ticket is not None and ticket.state is TicketState.HANDED_BACK
    assert (await a.store.load(KEY)).state is ConversationState.BOT
    texts = a.desk.customer_texts(KEY)
    assert "back to help" in texts[-1]  # a reminder, if any, came before the hand back
    assert len(texts) == 1 + sent
    a.clock.advance(60 * 60)
    assert await b.handoff.sweep() == 0 and await a.handoff.sweep() == 0


async def test_only_one_sweeper_acts_across_processes(pair: tuple[Stack, Stack]) -> None:
    a, b = pair
    await waiting_ticket(a)
    a.clock.advance(11 * 60)
    sweepers = [Sweeper(a.handoff, a.tickets, owner="p1"), Sweeper(b.handoff, b.tickets,
                                                                  owner="p2")]
    results = await asyncio.gather(*[s.tick() for s in sweepers])
    assert sorted(results, key=str) == [1, None]
    assert len(a.desk.agent_notices) == 1

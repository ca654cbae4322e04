"""Human handoff scenarios on both stores: escalate, claim, mute, reply, resolve, hand back,
cancel, timeouts, business hours."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.actions import Action
from bot.keys import Keys
from bot.live_config import ConfigSnapshot
from bot.models import ConversationState, ReplyKind
from bot.service import Outcome
from bot.summary import summarize
from bot.tickets import TicketState
from tests.conftest import REDIS_URL, RecordingOutbox
from tests.handoff_fakes import ScriptedLLM, Stack, make_stack, msg

UNKNOWN = "what is the meaning of life"
KEY = msg("", "x").key


@pytest.fixture(params=["memory", "redis"])
async def stack(request: pytest.FixtureRequest, redis_keys: Keys) -> AsyncIterator[Stack]:
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    yield make_stack(request.param, redis_keys, client=client)
    await client.aclose()


async def escalate(stack: Stack, outbox: RecordingOutbox) -> str:
    assert await stack.bot.handle(msg("How do I reset my password?", "e0"), outbox) \
        is Outcome.ANSWERED
    assert await stack.bot.handle(msg(UNKNOWN, "e1"), outbox) is Outcome.ESCALATED
    return (await stack.store.load(KEY)).fields["ticket"]


async def test_escalation_opens_ticket_tells_customer_and_posts_card(
        stack: Stack, outbox: RecordingOutbox) -> None:
    ticket_id = await escalate(stack, outbox)
    notice = outbox.final()[-1]
    assert notice.kind is ReplyKind.HANDOFF and "within 10 minutes" in notice.text
    assert (await stack.store.load(KEY)).state is ConversationState.WAITING_HUMAN
    ticket = await stack.tickets.get(ticket_id)
    assert ticket is not None and ticket.state is TicketState.OPEN
    assert (ticket.customer, ticket.reason, ticket.conversation) == ("U1", "low_confidence", KEY)
    assert ticket.transcript[-1].text == UNKNOWN
    assert ticket.link.endswith("/C1/t1")
    # no LLM: the summary falls back to the last messages
    assert ticket.summary[-1] == f"customer: {UNKNOWN}" and 3 <= len(ticket.summary) <= 5
    [(op, card_id, card)] = stack.desk.card_log
    stored = await stack.tickets.get(ticket_id)
    assert op == "post" and stored is not None and stored.card_id == card_id
    assert [(b.action, b.value) for b in card.buttons] == [
        (Action.CLAIM, ticket_id), (Action.RESOLVE, ticket_id), (Action.HANDBACK, ticket_id)]


async def test_claim_mutes_the_bot_and_records_both_sides(stack: Stack,
                                                         outbox: RecordingOutbox) -> None:
    ticket_id = await escalate(stack, outbox)
    result = await stack.handoff.claim(ticket_id.lower(), "A1", "Bea")
    assert result.ok
    assert stack.desk.customer_texts(KEY) == ["Bea has joined the conversation."]
    card = stack.desk.cards[result.ticket.card_id]  # type: ignore[union-attr]
    assert ("Status", "claimed by Bea") in card.fields
    assert Action.CLAIM not in [b.action for b in card.buttons]
    other = await stack.handoff.claim(ticket_id, "A2", "Cy")
    assert not other.ok and "already claimed by Bea" in other.message
    before = len(outbox.final())
    assert await stack.bot.handle(msg("How do I reset my password?", "e2"), outbox) \
        is Outcome.RECORDED
    assert await stack.bot.handle(msg("Hi, Bea here. Let me look.", "e3", user="A1"), outbox) \
        is Outcome.RECORDED
    assert len(outbox.final()) == before  # the bot stayed silent
    turns = (await stack.store.load(KEY)).turns
    assert [(t.role, t.text) for t in turns[-2:]] == [
        ("customer", "How do I reset my password?"), ("agent", "Hi, Bea here. Let me look.")]


async def test_resolve_keeps_transcript_and_next_message_gets_the_bot(
        stack: Stack, outbox: RecordingOutbox) -> None:
    ticket_id = await escalate(stack, outbox)
    await stack.handoff.claim(ticket_id, "A1", "Bea")
    await stack.bot.handle(msg("Bea, mail me at ann@example.com", "e2"), outbox)
    await stack.bot.handle(msg("Sure Ann, it is 42.", "e3", user="A1"), outbox)
    result = await stack.handoff.resolve(ticket_id, "Bea", "answered by hand")
    assert result.ok and result.ticket is not None
    assert result.ticket.state is TicketState.RESOLVED and result.ticket.note == "answered by hand"
    assert "resolved: answered by hand." in stack.desk.customer_texts(KEY)[-1]
    assert stack.desk.cards[result.ticket.card_id].buttons == ()
    assert (await stack.store.load(KEY)).state is ConversationState.CLOSED
    assert not (await stack.handoff.resolve(ticket_id, "Bea")).ok  # already resolved
    [kept] = await stack.tickets.transcripts()
    assert [t.role for t in kept.turns] == ["customer", "bot", "customer", "bot", "system",
                                            "customer", "agent", "system"]
    assert "ann@example.com" not in kept.turns[5].text
    assert await stack.bot.handle(msg("How do I reset my password?", "e4"), outbox) \
        is Outcome.ANSWERED
    assert outbox.final()[-1].citations[0].article_id == "reset-password"


async def test_hand_back_returns_the_conversation_to_the_bot(
        stack: Stack, outbox: RecordingOutbox) -> None:
    ticket_id = await escalate(stack, outbox)
    await stack.handoff.claim(ticket_id, "A1", "Bea")
    result = await stack.handoff.hand_back(ticket_id, "Bea")
    assert result.ok and "back to help" in stack.desk.customer_texts(KEY)[-1]
    assert (await stack.store.load(KEY)).state is ConversationState.BOT
    assert await stack.tickets.transcripts() == []  # no human answer, nothing kept
    assert await stack.bot.handle(msg("How do I reset my password?", "e2"), outbox) \
        is Outcome.ANSWERED


async def test_waiting_customer_can_cancel(stack: Stack, outbox: RecordingOutbox) -> None:
    ticket_id = await escalate(stack, outbox)
    assert await stack.bot.handle(msg("never mind, found it", "e2"), outbox) is Outcome.CANCELLED
    assert "cancelled the request" in outbox.final()[-1].text
    ticket = await stack.tickets.get(ticket_id)
    assert ticket is not None and ticket.state is TicketState.CANCELLED
    assert stack.desk.cards[ticket.card_id].buttons == ()
    claim = await stack.handoff.claim(ticket_id, "A1", "Bea")
    assert not claim.ok and "cancelled" in claim.message
    assert await stack.bot.handle(msg("How do I reset my password?", "e3"), outbox) \
        is Outcome.ANSWERED


async def test_unknown_ticket_ids_are_clear_errors(stack: Stack) -> None:
    for action in (stack.handoff.claim("T999", "A1", "Bea"),
                   stack.handoff.resolve("T999", "Bea"), stack.handoff.hand_back("nope", "Bea")):
        result = await action
        assert not result.ok and result.message.startswith("No ticket")


async def test_unclaimed_ticket_reminds_agents_and_updates_customer_once_per_timeout(
        stack: Stack, outbox: RecordingOutbox) -> None:
    ticket_id = await escalate(stack, outbox)
    stack.clock.advance(9 * 60)
    assert await stack.handoff.sweep() == 0
    stack.clock.advance(2 * 60)
    assert await stack.handoff.sweep() == 1
    assert await stack.handoff.sweep() == 0  # nothing more until the next timeout
    [(_, text, card_id)] = stack.desk.agent_notices
    assert ticket_id in text and "11 minutes" in text and card_id
    assert "still in the queue" in stack.desk.customer_texts(KEY)[-1]
    await stack.handoff.claim(ticket_id, "A1", "Bea")
    stack.clock.advance(30 * 60)
    assert await stack.handoff.sweep() == 0  # claimed tickets are not reminded


async def test_sweeper_finishes_a_claim_interrupted_between_its_two_steps(
        stack: Stack, outbox: RecordingOutbox) -> None:
    ticket_id = await escalate(stack, outbox)
    # the claiming process dies right after the ticket's compare-and-set
    result = await stack.tickets.claim(ticket_id, "A1", "Bea", stack.clock.now())
    assert result.won
    assert (await stack.store.load(KEY)).state is ConversationState.WAITING_HUMAN
    joined = [t for t in stack.desk.customer_texts(KEY) if "has joined" in t]
    assert joined == []
    await stack.handoff.sweep()
    conversation = await stack.store.load(KEY)
    assert conversation.state is ConversationState.HUMAN
    assert conversation.fields["agent"] == "A1" and conversation.fields["ticket"] == ticket_id
    await stack.handoff.sweep()  # nothing left to repair: the customer is told once
    joined = [t for t in stack.desk.customer_texts(KEY) if "has joined" in t]
    assert joined == ["Bea has joined the conversation."]
    # and the bot now stays silent for the agent
    assert await stack.bot.handle(msg("hello?", "e9"), outbox) is Outcome.RECORDED


async def test_card_that_failed_to_post_is_posted_by_the_sweeper(
        stack: Stack, outbox: RecordingOutbox) -> None:
    stack.desk.fail_cards = 1
    ticket_id = await escalate(stack, outbox)
    assert stack.desk.card_log == []
    assert outbox.final()[-1].kind is ReplyKind.HANDOFF  # the customer was still told
    await stack.handoff.sweep()
    ticket = await stack.tickets.get(ticket_id)
    assert ticket is not None and ticket.card_id in stack.desk.cards


async def test_outside_business_hours_customer_is_told_when_team_is_back(
        redis_keys: Keys) -> None:
    # FakeClock starts on Tuesday 2023-11-14 22:13 UTC: after hours.
    stack = make_stack("memory", redis_keys,
                       defaults=ConfigSnapshot(business_hours="mon-fri 09:00-17:00 UTC"))
    outbox = RecordingOutbox()
    await stack.bot.handle(msg(UNKNOWN, "e1"), outbox)
    assert "away right now; someone will answer on Wednesday at 09:00 (UTC)" \
        in outbox.final()[-1].text


async def test_summary_written_by_the_engine_or_fallback() -> None:
    from bot.models import Turn
    turns = [Turn("customer", f"message {i}", float(i)) for i in range(8)]
    llm = ScriptedLLM("- wants a refund\n- paid twice in May\n- bot had no answer\n- angry")
    assert await summarize(turns, llm) == ["wants a refund", "paid twice in May",
                                           "bot had no answer", "angry"]
    fallback = await summarize(turns, ScriptedLLM(fail=True))
    assert fallback == [f"customer: message {i}" for i in range(3, 8)]
    short = await summarize(turns, ScriptedLLM("refund"))  # too short: padded with context
    assert short[0] == "refund" and 3 <= len(short) <= 5

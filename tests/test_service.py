"""Scenario tests for SupportBot.handle with the real knowledge base answerer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from bot.answer_kb import KnowledgeBaseAnswerer
from bot.keys import Keys
from bot.knowledge import load_markdown_dir
from bot.models import ConversationState, Inbound, Reply, ReplyKind, Turn
from bot.ports import Answer, ConversationStore, PartialSink
from bot.service import BotPolicy, Outcome, SupportBot
from bot.store_memory import MemoryStore
from bot.store_redis import RedisStore
from tests.conftest import REDIS_URL, RecordingOutbox

KB_DIR = Path(__file__).resolve().parent.parent / "examples" / "kb"


def msg(text: str, event: str, thread: str = "t1", user: str = "U1") -> Inbound:
    return Inbound("slack", "T1", "C1", thread, user, text, event_id=event)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis_keys: Keys
                ) -> AsyncIterator[ConversationStore]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        s = RedisStore.from_url(REDIS_URL, redis_keys)
        yield s
        await s.close()


@pytest.fixture
def bot(store: ConversationStore) -> SupportBot:
    return SupportBot(store, KnowledgeBaseAnswerer(load_markdown_dir(KB_DIR)))


async def test_answers_with_citation_and_records(bot: SupportBot,
                                                 outbox: RecordingOutbox) -> None:
    outcome = await bot.handle(msg("How do I reset my password?", "e1"), outbox)
    assert outcome is Outcome.ANSWERED
    [reply] = outbox.final()
    assert reply.kind is ReplyKind.ANSWER and "Reset password" in reply.text
    assert reply.citations[0].article_id == "reset-password"
    assert reply.citations[0].url.endswith("/reset-password")
    conv = await bot.store.load(msg("", "x").key)
    assert [t.role for t in conv.turns] == ["customer", "bot"]
    assert conv.turns[1].article_id == "reset-password"


async def test_unknown_question_escalates_and_then_stays_silent(
        bot: SupportBot, outbox: RecordingOutbox) -> None:
    assert await bot.handle(msg("what is the meaning of life", "e1"), outbox) is Outcome.ESCALATED
    [reply] = outbox.final()
    assert reply.kind is ReplyKind.HANDOFF and reply.reason == "low_confidence"
    conv = await bot.store.load(msg("", "x").key)
    assert conv.state is ConversationState.WAITING_HUMAN
    assert conv.fields["reason"] == "low_confidence"
    # While waiting for a person the bot records but does not answer.
    assert await bot.handle(msg("How do I reset my password?", "e2"), outbox) is Outcome.RECORDED
    assert len(outbox.final()) == 1
    conv = await bot.store.load(msg("", "x").key)
    assert conv.turns[-1].text == "How do I reset my password?"


async def test_escalate_always_article_hands_over(bot: SupportBot,
                                                  outbox: RecordingOutbox) -> None:
    assert await bot.handle(msg("How do I delete my account?", "e1"), outbox) is Outcome.ESCALATED
    assert outbox.final()[0].reason == "article_escalates"


async def test_duplicate_delivery_answered_once(bot: SupportBot, outbox: RecordingOutbox) -> None:
    first = msg("How much does it cost?", "same-event")
    results = await asyncio.gather(bot.handle(first, outbox), bot.handle(first, outbox))
    assert sorted(results) == sorted([Outcome.ANSWERED, Outcome.DUPLICATE])
    assert len(outbox.final()) == 1


async def test_rate_limit_keeps_the_message(store: ConversationStore,
                                            outbox: RecordingOutbox) -> None:
    bot = SupportBot(store, KnowledgeBaseAnswerer(load_markdown_dir(KB_DIR)),
                     BotPolicy(rate_limit=2, rate_window_s=60))
    outcomes = [await bot.handle(msg("Is there a mobile app?", f"e{i}"), outbox) for i in range(3)]
    assert outcomes == [Outcome.ANSWERED, Outcome.ANSWERED, Outcome.RATE_LIMITED]
    assert outbox.final()[-1].kind is ReplyKind.NOTICE
    conv = await store.load(msg("", "x").key)
    assert [t.role for t in conv.turns].count("customer") == 3


async def test_personal_data_is_masked_before_storage(bot: SupportBot,
                                                      outbox: RecordingOutbox) -> None:
    await bot.handle(msg("my card 4111 1111 1111 1111 and mail jo@example.com, reset password?",
                         "e1"), outbox)
    stored = (await bot.store.load(msg("", "x").key)).turns[0].text
    assert "4111" not in stored and "jo@example.com" not in stored
    assert "[card]" in stored and "[email]" in stored


async def test_closed_conversation_restarts_with_bot(bot: SupportBot,
                                                     outbox: RecordingOutbox) -> None:
    key = msg("", "x").key
    await bot.store.transition(key, [ConversationState.BOT], ConversationState.CLOSED)
    assert await bot.handle(msg("Is there a mobile app?", "e1"), outbox) is Outcome.ANSWERED
    assert (await bot.store.load(key)).state is ConversationState.BOT


class SlowStreamingAnswerer:
    """Streams words with a delay, to check ordering and streaming through the outbox."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def answer(self, inbound: Inbound, history: Sequence[Turn],
                     sink: PartialSink | None = None) -> Answer:
        self.seen.append(inbound.text)
        text = ""
        for word in ["one", "two", "three"]:
            text += word + " "
            if sink is not None:
                await sink(text.strip())
            await asyncio.sleep(0.02)
        return Answer(Reply(text.strip()), escalate=False, reason="answered")


async def test_messages_in_one_thread_are_handled_in_order(store: ConversationStore) -> None:
    answerer = SlowStreamingAnswerer()
    bot = SupportBot(store, answerer, BotPolicy(stream_interval_s=0.0))
    outboxes = [RecordingOutbox() for _ in range(3)]
    messages = [msg(f"q{i}", f"e{i}") for i in range(3)]
    # The conversation is busy (another message being answered) while three more arrive,
    # delivered out of order: they must be handled one at a time, in the order sent.
    async with store.lock(messages[0].key):
        tasks = [asyncio.create_task(bot.handle(messages[i], outboxes[i])) for i in (2, 0, 1)]
        await asyncio.sleep(0.4)
        assert answerer.seen == []
    await asyncio.gather(*tasks)
    assert answerer.seen == ["q0", "q1", "q2"]
    conv = await store.load(msg("", "x").key, max_turns=10)
    assert [t.text for t in conv.turns if t.role == "customer"] == ["q0", "q1", "q2"]
    # streamed into one message: first a post, then edits, final text complete
    ops = [op for op, _, _ in outboxes[0].log]
    assert ops[0] == "post" and set(ops[1:]) == {"edit"}
    assert outboxes[0].final()[0].text == "one two three"

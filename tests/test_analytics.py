"""Support figures checked against a scripted set of conversations; `supportbot stats`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis

from bot.actions import Action
from bot.admin_store import MemoryKeyValue, RedisKeyValue
from bot.analytics import Analytics, group_questions, report_lines
from bot.keys import Keys
from bot.models import ConversationKey
from tests.conftest import REDIS_URL, RecordingOutbox
from tests.handoff_fakes import Stack, make_stack, msg
from tests.test_admin import CUSTOMER, buttons_for
from tests.test_cli_chat import run_cli

ANSWERABLE = "How do I reset my password?"
UNKNOWN = "what is the meaning of life"


async def say(stack: Stack, thread: str, text: str, delay: float, user: str = "U1") -> None:
    """The customer wrote `delay` seconds ago (the first response time we expect)."""
    await stack.bot.handle(msg(text, f"{thread}-{text}", user=user, thread=thread,
                               ts=stack.clock.now() - delay), RecordingOutbox())


async def scripted_day(stack: Stack) -> None:
    buttons = buttons_for(stack)
    await say(stack, "a", ANSWERABLE, 1)  # answered, nothing else: resolved by the bot
    await say(stack, "b", ANSWERABLE, 2)  # answered, then Not helpful
    await buttons.handle(CUSTOMER, Action.NOT_HELPFUL, "reset-password", msg("", "", thread="b")
                         .key, comment="did not work")
    await say(stack, "c", UNKNOWN, 3)  # escalated, claimed after 60 s, resolved
    c = (await stack.store.load(msg("", "", thread="c").key)).fields["ticket"]
    stack.clock.advance(60)
    await stack.handoff.claim(c, "A1", "Bea")
    await stack.handoff.resolve(c, "Bea", "done")
    await say(stack, "d", ANSWERABLE, 4)  # answered, then "Talk to a person", claimed at 180 s
    d_key = msg("", "", thread="d").key
    await buttons.handle(CUSTOMER, Action.TALK_TO_HUMAN, "", d_key, RecordingOutbox())
    d = (await stack.store.load(d_key)).fields["ticket"]
    stack.clock.advance(180)
    await stack.handoff.claim(d, "A1", "Bea")
    await say(stack, "e", ANSWERABLE, 5)  # answered, Helpful
    await buttons.handle(CUSTOMER, Action.HELPFUL, "reset-password", msg("", "", thread="e").key)
    await say(stack, "f", UNKNOWN + "?", 6)  # escalated, never claimed


async def test_figures_match_the_scripted_conversations(redis_keys: Keys) -> None:
    stack = make_stack("memory", redis_keys)
    await scripted_day(stack)
    r = await stack.analytics.report(1, stack.clock.now())
    assert r.conversations == 6 and r.by_channel == {"slack:C1": 6}
    assert r.bot_answers == 4 and r.resolved_by_bot == 2  # a and e
    assert r.escalations == 3 and r.by_reason == {"low_confidence": 2, "asked_for_human": 1}
    assert math.isclose(r.escalation_rate or 0, 0.5)
    assert (r.first_response_p50, r.first_response_p90) == (3.0, 6.0)
    assert (r.time_to_claim_p50, r.time_to_claim_p90) == (60.0, 180.0)
    assert (r.helpful, r.not_helpful, r.csat) == (1, 1, 0.5)
    assert r.claims == 2 and r.human_resolved == 1
    # Handed-over questions, grouped by exact text without an embedder ("d" asked for a
    # person after the bot's answer, so its question counts as unanswered too).
    assert r.unanswered == [("what is the meaning of life", 1),
                            ("how do i reset my password?", 1),
                            ("what is the meaning of life?", 1)]
    lines = report_lines(r)
    assert any(ln.split() == ["resolved", "by", "bot", "2", "(33%)"] for ln in lines)


class WordEmbedder:
    """Bag-of-words vectors over a tiny vocabulary: similar questions point the same way."""

    vocab = ("meaning", "life", "refund", "invoice")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[float(w in t.lower()) for w in self.vocab] for t in texts]


async def test_unanswered_questions_grouped_by_embedding_similarity() -> None:
    texts = ["what is the meaning of life", "Meaning of life??", "refund my invoice",
             "life meaning, please", "weather"]
    assert await group_questions(texts, WordEmbedder()) == [
        ("what is the meaning of life", 3), ("refund my invoice", 1), ("weather", 1)]


async def test_not_helpful_spoils_resolution_only_within_the_window() -> None:
    analytics = Analytics(MemoryKeyValue(), Keys("w"), resolve_window_h=24)
    key = ConversationKey("slack", "T1", "C1", "t")
    t0 = 1_700_000_000.0
    await analytics.answered(key, t0, "e1")
    await analytics.feedback(key, False, t0 + 25 * 3600, "e1")  # too late to count against it
    assert (await analytics.report(2, t0 + 25 * 3600)).resolved_by_bot == 1
    await analytics.answered(key, t0, "e2")
    await analytics.feedback(key, False, t0 + 3600, "e2")
    assert (await analytics.report(2, t0 + 25 * 3600)).resolved_by_bot == 1  # e2 is spoiled


async def test_stats_cli_prints_table_and_draws_png(tmp_path: Path, redis_keys: Keys) -> None:
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    analytics = Analytics(RedisKeyValue(client), redis_keys)
    key = ConversationKey("slack", "T1", "C9", "t")
    for _ in range(3):
        await analytics.conversation_started(key, time.time())
    await analytics.escalated(key, "low_confidence", time.time(), "where is my parcel")
    await client.aclose()
    png = tmp_path / "stats.png"
    result = run_cli("stats", "--days", "2", "--png", str(png),
                     env={"SUPPORTBOT_REDIS_URL": REDIS_URL,
                          "SUPPORTBOT_REDIS_PREFIX": redis_keys.prefix})
    assert result.returncode == 0, result.stderr
    assert any(ln.split() == ["conversations", "3"] for ln in result.stdout.splitlines())
    assert "1x  where is my parcel" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = run_cli("stats", "--days", "0", env={"SUPPORTBOT_REDIS_URL": REDIS_URL})
    assert bad.returncode == 2 and "--days" in bad.stderr

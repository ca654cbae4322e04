"""Streaming, splitting, acks and 429s, end to end through the real slack-bolt app."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from adapters.slack.app import SlackAdapter
from bot.ports import Answerer
from tests.slack.conftest import SUPPORT_CHANNEL
from tests.slack.fake_slack import FakeSlack, message_event
from tests.slack.scripted import GatedAnswerer, StreamingAnswerer
from tests.slack.test_slack_e2e import action_ids, deliver, texts

WORDS = [f"word{i}" for i in range(50)]  # 50 partials, 0.05 s apart: about 2.5 s of stream


class TestStreaming:
    @pytest.fixture
    def answerer(self) -> Answerer:
        return StreamingAnswerer(WORDS, step_s=0.05)

    async def test_edits_never_faster_than_once_a_second(self, fake_slack: FakeSlack,
                                                         slack: SlackAdapter) -> None:
        question = message_event(SUPPORT_CHANNEL, "stream please")
        await deliver(fake_slack, slack, question)
        [placeholder] = fake_slack.calls_to("chat.postMessage")
        assert placeholder.args["text"].endswith("…")  # a partial, not the final answer
        updates = [c for c in fake_slack.calls_to("chat.update")
                   if c.args["ts"] == placeholder.response["ts"]]
        assert len(updates) >= 2  # it did stream ...
        stamps = [placeholder.at] + [u.at for u in updates]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert min(gaps) >= 1.0, gaps  # ... never faster than once a second
        [reply] = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
        assert texts(reply.blocks) == " ".join(WORDS)  # the final edit: whole text ...
        assert "Reset your password" in texts(reply.blocks, "context")  # ... sources ...
        assert action_ids(reply.blocks) == ["sb_helpful", "sb_not_helpful", "sb_talk_to_human"]
        for partial in [placeholder, *updates[:-1]]:  # partials carry no buttons
            assert action_ids(partial.args["blocks"]) == []


class TestLongAnswer:
    # 60 paragraphs of ~2,900 characters: more than 50 section blocks, so two messages.
    PARAGRAPH = ("lorem ipsum dolor " * 161).strip()

    @pytest.fixture
    def answerer(self) -> Answerer:
        return StreamingAnswerer([self.PARAGRAPH + "\n\n"] * 60, step_s=0.0)

    async def test_split_within_slack_limits(self, fake_slack: FakeSlack,
                                             slack: SlackAdapter) -> None:
        question = message_event(SUPPORT_CHANNEL, "tell me everything")
        await deliver(fake_slack, slack, question)
        pages = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
        assert len(pages) == 2
        rejected = [c for c in fake_slack.calls if not c.response.get("ok")]
        assert rejected == []  # the fake refuses >3,000 chars per section or >50 blocks
        for page in pages:
            assert len(page.blocks) <= 50
            assert all(len(b["text"]["text"]) <= 3000 for b in page.blocks
                       if b["type"] == "section")
        body = " ".join(texts(p.blocks) for p in pages)
        assert body.split() == ((self.PARAGRAPH + " ") * 60).split()  # nothing lost
        assert action_ids(pages[0].blocks) == []
        assert action_ids(pages[-1].blocks)[0] == "sb_helpful"


class TestSlowEngine:
    @pytest.fixture
    def answerer(self) -> Answerer:
        return GatedAnswerer()

    async def test_ack_does_not_wait_for_the_answer(self, fake_slack: FakeSlack,
                                                    slack: SlackAdapter,
                                                    answerer: GatedAnswerer) -> None:
        question = message_event(SUPPORT_CHANNEL, "anything")
        envelope = await fake_slack.send_event(question)
        # The engine is stuck until the gate opens, and the ack still arrives in time.
        ack = await fake_slack.wait_ack(envelope, within_s=3.0)
        await asyncio.wait_for(answerer.started.wait(), 3.0)
        assert not fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
        assert ack.at - fake_slack.sent_at[envelope] < 3.0
        answerer.gate.set()
        await slack.idle()
        assert len(fake_slack.thread(SUPPORT_CHANNEL, question["ts"])) == 1


async def test_rate_limited_once_still_one_message(fake_slack: FakeSlack,
                                                   slack: SlackAdapter) -> None:
    fake_slack.rate_limit_next("chat.postMessage", retry_after=1)
    question = message_event(SUPPORT_CHANNEL, "How do I reset my password?")
    await deliver(fake_slack, slack, question)
    attempts = fake_slack.calls_to("chat.postMessage", ok_only=False)
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 1.0  # waited out Retry-After
    assert len(fake_slack.thread(SUPPORT_CHANNEL, question["ts"])) == 1

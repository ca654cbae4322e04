"""The grounded answerer with a fake LLM: streaming, citations, the faithfulness guard,
fallbacks and escalations (no models loaded)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

from bot.answerer import GroundedAnswerer
from bot.faithfulness import FaithfulnessGuard
from bot.knowledge import Article
from bot.models import Inbound, ReplyKind, Turn
from bot.policy import Reason
from bot.retrieval import ArticleHit
from tests.handoff_fakes import Chunk

RESET = Article(id="reset-password", title="Reset your password",
                url="https://help.example.com/reset-password",
                body="Open Settings → Security and choose Reset password. "
                     "The link arrives within 5 minutes. Check your spam folder if it "
                     "does not arrive.")
LEGAL = Article(id="legal", title="Legal requests", body="Our legal team handles these.",
                escalate="always")


@dataclass
class FakeLLM:
    """Implements the LLM Protocol: streams the given pieces, optionally failing midway."""

    pieces: list[str]
    fail_after: int | None = None
    finish: str = "stop"
    prompts: list[Sequence[dict[str, str]]] = field(default_factory=list)

    async def stream_chat(self, messages: Sequence[dict[str, str]], max_tokens: int = 256,
                          stop: Sequence[str] = (), temperature: float = 0.0,
                          ) -> AsyncIterator[Chunk]:
        self.prompts.append(messages)
        for i, piece in enumerate(self.pieces):
            if self.fail_after is not None and i == self.fail_after:
                raise ConnectionError("engine went away")
            last = i == len(self.pieces) - 1
            yield Chunk(piece, self.finish if last else None)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[0.0] for _ in texts]


@dataclass
class FakeSearcher:
    hits: list[ArticleHit]
    queries: list[str] = field(default_factory=list)

    async def search(self, query: str, k: int = 5) -> list[ArticleHit]:
        self.queries.append(query)
        return self.hits


def hit(article: Article, confidence: float = 0.9) -> ArticleHit:
    return ArticleHit(article, confidence, best=0.9, votes=1.0, lexical=0.5)


def inbound(text: str, channel: str = "C1") -> Inbound:
    return Inbound("console", "w", channel, "t1", "u1", text, event_id="e1")


class Partials:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, text: str) -> None:
        self.seen.append(text)


async def test_without_llm_the_article_text_is_sent_with_citation() -> None:
    answerer = GroundedAnswerer(FakeSearcher([hit(RESET)]), llm=None)
    answer = await answerer.answer(inbound("I forgot my password"), [])
    assert not answer.escalate and answer.reason == Reason.ANSWERED
    assert answer.reply.text == RESET.body and answer.reply.kind is ReplyKind.ANSWER
    (citation,) = answer.reply.citations
    assert (citation.title, citation.url) == (RESET.title, RESET.url)
    assert answer.article_id == "reset-password" and answer.confidence == 0.9


async def test_supported_generation_streams_sentence_by_sentence() -> None:
    llm = FakeLLM(["Open Settings → Security ", "and choose Reset password. The link ",
                   "arrives within 5 minutes."])
    sink = Partials()
    answerer = GroundedAnswerer(FakeSearcher([hit(RESET)]), llm)
    history = [Turn("customer", "hi", 1.0), Turn("bot", "Hello! How can I help?", 2.0)]
    answer = await answerer.answer(inbound("how do I reset my password?"), history, sink)
    expected = ("Open Settings → Security and choose Reset password. "
                "The link arrives within 5 minutes.")
    assert answer.reply.text == expected and answerer.guard_fired == 0
    assert sink.seen == ["Open Settings → Security and choose Reset password.", expected]
    assert answer.reply.citations[0].article_id == "reset-password"
    # The prompt: system policy with the article, the recent turns, then the question.
    prompt = llm.prompts[0]
    assert prompt[0]["role"] == "system" and "within 5 minutes" in prompt[0]["content"]
    assert [m["role"] for m in prompt[1:]] == ["user", "assistant", "user"]
    assert prompt[-1]["content"] == "how do I reset my password?"


async def test_guard_fires_on_unsupported_generation_and_sends_article_instead() -> None:
    llm = FakeLLM(["Open Settings → Security and choose Reset password. ",
                   "We will also refund 50 dollars to your card within 24 hours."])
    sink = Partials()
    answerer = GroundedAnswerer(FakeSearcher([hit(RESET)]), llm)
    answer = await answerer.answer(inbound("reset password"), [], sink)
    assert answer.reply.text == RESET.body  # the article's own answer, never the invention
    assert answerer.guard_fired == 1 and not answer.escalate
    assert all("refund" not in partial for partial in sink.seen)  # never shown, not even
    assert answer.reply.citations[0].url == RESET.url


@pytest.mark.parametrize("llm", [FakeLLM(["Open Settings.", " More"], fail_after=1),
                                 FakeLLM(["Open Settings → Security"], finish="error"),
                                 FakeLLM([""], finish="stop")])
async def test_llm_failures_fall_back_to_the_article(llm: FakeLLM) -> None:
    answerer = GroundedAnswerer(FakeSearcher([hit(RESET)]), llm)
    answer = await answerer.answer(inbound("reset password"), [], Partials())
    assert answer.reply.text == RESET.body and answerer.guard_fired == 1


async def test_asking_for_a_person_escalates_before_retrieval() -> None:
    searcher = FakeSearcher([hit(RESET)])
    answer = await GroundedAnswerer(searcher).answer(inbound("can I talk to a human?"), [])
    assert answer.escalate and answer.reason == Reason.ASKED_FOR_HUMAN
    assert answer.reply.kind is ReplyKind.HANDOFF and answer.reply.reason == answer.reason
    assert searcher.queries == []


async def test_thresholds_per_channel_and_article_escalation() -> None:
    answerer = GroundedAnswerer(FakeSearcher([hit(RESET, 0.6)]), threshold=0.5,
                                channel_thresholds={"strict": 0.8})
    assert not (await answerer.answer(inbound("reset", "C1"), [])).escalate
    strict = await answerer.answer(inbound("reset", "strict"), [])
    assert strict.escalate and strict.reason == Reason.LOW_CONFIDENCE
    assert strict.confidence == 0.6 and strict.article_id == "reset-password"
    answerer.min_coverage = 0.7  # what SupportBot does when an admin changes the threshold
    assert (await answerer.answer(inbound("reset", "C1"), [])).escalate
    legal = await GroundedAnswerer(FakeSearcher([hit(LEGAL)])).answer(inbound("gdpr"), [])
    assert legal.escalate and legal.reason == Reason.ARTICLE_ESCALATES
    none = await GroundedAnswerer(FakeSearcher([])).answer(inbound("anything"), [])
    assert none.escalate and none.reason == Reason.NO_MATCH


def test_guard_sentence_checks() -> None:
    guard = FaithfulnessGuard()
    ok = guard.check("Choose Reset password in Settings. The link arrives within 5 minutes.",
                     [RESET.body])
    assert ok.supported
    wrong_number = guard.check("The link arrives within 15 minutes.", [RESET.body])
    assert not wrong_number.supported
    assert wrong_number.checks[0].missing_facts == ("15",)
    off_topic = guard.check("Our premium plan includes unlimited storage.", [RESET.body])
    assert not off_topic.supported and off_topic.checks[0].word_support < 0.5
    assert not guard.check("", [RESET.body]).supported  # nothing generated: not an answer


async def test_token_limit_keeps_only_complete_supported_sentences() -> None:
    llm = FakeLLM(["Open Settings → Security and choose Reset password. The link arr"],
                  finish="length")
    answer = await GroundedAnswerer(FakeSearcher([hit(RESET)]), llm).answer(
        inbound("reset password"), [], Partials())
    assert answer.reply.text == "Open Settings → Security and choose Reset password."


async def test_handover_mid_stream_stops_the_engine_stream() -> None:
    closed: list[bool] = []

    class ClosingLLM(FakeLLM):
        async def stream_chat(self, messages: Sequence[dict[str, str]], max_tokens: int = 256,
                              stop: Sequence[str] = (), temperature: float = 0.0,
                              ) -> AsyncIterator[Chunk]:
            try:
                for piece in self.pieces:
                    yield Chunk(piece)
            finally:
                closed.append(True)

    class Superseded(Exception):
        pass

    async def sink(_text: str) -> None:
        raise Superseded  # what SupportBot raises when a human claims the conversation

    llm = ClosingLLM(["Open Settings → Security. ", "Choose Reset password. ", "More."])
    with pytest.raises(Superseded):
        await GroundedAnswerer(FakeSearcher([hit(RESET)]), llm).answer(
            inbound("reset password"), [], sink)
    assert closed == [True]

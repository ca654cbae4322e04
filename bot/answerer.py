"""The grounded answerer: policy pre-checks -> hybrid retrieval -> confidence threshold ->
a generated answer grounded in the best article, streamed sentence by sentence, cited.

Only sentences the faithfulness guard accepts are ever shown while streaming. When any
sentence is unsupported, when the LLM fails, or when no LLM is configured, the customer gets
the article's own text instead. Either way the reply cites the article (title and url).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from bot.faithfulness import FaithfulnessGuard, split_sentences
from bot.kb_index import article_passages
from bot.knowledge import Article
from bot.models import Citation, Inbound, Reply, ReplyKind, Turn
from bot.policy import Decision, Reason, decide, precheck
from bot.ports import LLM, Answer, GenerationChunk, PartialSink
from bot.retrieval import Searcher

log = logging.getLogger(__name__)

HANDOFF_TEXT = ("I'm not sure about this one, so I've asked a person from our support team "
                "to follow up here.")
ASKED_TEXT = "Of course. I've asked a person from our support team to join this conversation."

SYSTEM_PROMPT = (
    "You are a customer-support assistant. Answer the customer's question using ONLY the "
    "facts in the knowledge-base article below. Keep it short: two or three sentences, "
    "reuse the article's wording, and do not add steps, numbers, links or promises that are "
    "not in the article. If the article does not answer the question, say you will ask a "
    "person to help.\n\nArticle: {title}\n{passages}")


@dataclass(frozen=True)
class GenerationConfig:
    max_tokens: int = 160
    history_turns: int = 4  # recent turns given to the model for context
    passages: int = 3  # passages of the article put into the prompt
    timeout_s: float = 60.0  # a stuck engine falls back to the article text


def citation_for(article: Article) -> Citation:
    return Citation(article_id=article.id, title=article.title, url=article.url)


def handoff_answer(decision: Decision) -> Answer:
    text = ASKED_TEXT if decision.reason == Reason.ASKED_FOR_HUMAN else HANDOFF_TEXT
    hit = decision.hit
    return Answer(Reply(text, kind=ReplyKind.HANDOFF, reason=decision.reason), escalate=True,
                  reason=decision.reason, confidence=decision.confidence,
                  article_id=hit.article.id if hit is not None else "")


class GenerationFailed(Exception):
    """The LLM errored, stalled or stopped without a usable sentence."""


class GroundedAnswerer:
    def __init__(self, retriever: Searcher, llm: LLM | None = None,
                 threshold: float = 0.5, channel_thresholds: Mapping[str, float] | None = None,
                 guard: FaithfulnessGuard | None = None,
                 generation: GenerationConfig | None = None) -> None:
        self.retriever = retriever
        self.llm = llm
        # Named like the lexical answerer's field: SupportBot sets it from the live config.
        self.min_coverage = threshold
        self.channel_thresholds = dict(channel_thresholds or {})
        self.guard = guard or FaithfulnessGuard()
        self.generation = generation or GenerationConfig()
        self.guard_fired = 0  # generations replaced by the article text (for logs and tests)

    def threshold_for(self, channel: str) -> float:
        return self.channel_thresholds.get(channel, self.min_coverage)

    async def decide(self, inbound: Inbound, history: Sequence[Turn]) -> Decision:
        pre = precheck(inbound.text, history)
        if pre is not None:
            return pre
        hits = await self.retriever.search(inbound.text)
        return decide(hits, self.threshold_for(inbound.channel))

    async def answer(self, inbound: Inbound, history: Sequence[Turn],
                     sink: PartialSink | None = None) -> Answer:
        decision = await self.decide(inbound, history)
        if decision.escalate or decision.hit is None:
            return handoff_answer(decision)
        article = decision.hit.article
        text = article.body
        if self.llm is not None:
            try:
                text = await self._generate(self.llm, article, inbound, history, sink)
            except GenerationFailed as exc:
                self.guard_fired += 1
                log.info("answer for %s falls back to the article text: %s", article.id, exc)
        reply = Reply(text, kind=ReplyKind.ANSWER, citations=(citation_for(article),),
                      reason=Reason.ANSWERED)
        return Answer(reply, escalate=False, reason=Reason.ANSWERED,
                      confidence=decision.confidence, article_id=article.id)

    def prompt(self, article: Article, inbound: Inbound,
               history: Sequence[Turn]) -> list[dict[str, str]]:
        passages = "\n\n".join(p.split("\n", 1)[-1] for p in
                               article_passages(article)[: self.generation.passages])
        messages = [{"role": "system",
                     "content": SYSTEM_PROMPT.format(title=article.title, passages=passages)}]
        recent = [t for t in history if t.role in ("customer", "bot")]
        for turn in recent[-self.generation.history_turns:] if self.generation.history_turns \
                else []:
            role = "user" if turn.role == "customer" else "assistant"
            messages.append({"role": role, "content": turn.text})
        messages.append({"role": "user", "content": inbound.text})
        return messages

    async def _generate(self, llm: LLM, article: Article, inbound: Inbound,
                        history: Sequence[Turn], sink: PartialSink | None) -> str:
        """Stream the generation; show each sentence only once the guard accepts it."""
        sources = [article.title, article.body]
        stream = llm.stream_chat(self.prompt(article, inbound, history),
                                 max_tokens=self.generation.max_tokens, temperature=0.0)
        buffer, accepted = "", list[str]()
        finish: str | None = None
        # aclosing: when the sink raises (a human took over), the engine stream is closed now,
        # which cancels the generation, instead of whenever the generator is collected.
        async with contextlib.aclosing(_chunks(stream, self.generation.timeout_s)) as chunks:
            async for text, finish in chunks:
                buffer += text
                sentences = split_sentences(buffer)
                # The last piece may still be growing (or was cut off by the token limit).
                complete = sentences if finish == "stop" else sentences[:-1]
                if len(complete) > len(accepted):
                    new = complete[len(accepted):]
                    report = self.guard.check(" ".join(new), sources)
                    if not report.supported:
                        raise GenerationFailed(f"unsupported sentence: {report.unsupported[0]!r}")
                    accepted.extend(new)
                    if sink is not None:  # outside any try: Superseded must reach the service
                        await sink(" ".join(accepted))
        # On "length" the cut-off last sentence was never accepted; what was accepted stands.
        if finish not in ("stop", "length"):
            raise GenerationFailed(f"generation ended with {finish!r}")
        if not accepted:
            raise GenerationFailed("the model produced no complete sentence")
        return " ".join(accepted)


async def _chunks(stream: AsyncIterator[GenerationChunk], timeout_s: float,
                  ) -> AsyncGenerator[tuple[str, str | None], None]:
    """(text, finish_reason) per chunk; LLM errors and stalls become GenerationFailed.

    The consumer's own code (the sink) runs between yields, outside this try, so a
    Superseded raised there is not mistaken for an engine failure.
    """
    iterator = aiter(stream)
    try:
        async for item in _guarded(iterator, timeout_s):
            yield item
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


async def _guarded(iterator: AsyncIterator[GenerationChunk], timeout_s: float,
                   ) -> AsyncIterator[tuple[str, str | None]]:
    while True:
        try:
            chunk = await asyncio.wait_for(anext(iterator), timeout_s)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise GenerationFailed(f"no token for {timeout_s:.0f} s") from None
        except Exception as exc:  # any client error (HTTP, Redis, engine) means: fall back
            raise GenerationFailed(f"LLM error: {exc!r}") from exc
        yield chunk.text, chunk.finish_reason
        if chunk.finish_reason is not None:
            return

"""Scripted answerers implementing bot.ports.Answerer, for tests that need control over
timing (streaming) or size (long answers)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bot.models import Citation, Inbound, Reply, ReplyKind, Turn
from bot.ports import Answer, PartialSink

CITATION = Citation("reset-password", "Reset your password",
                    "https://help.tallyhub.example/reset-password")


class StreamingAnswerer:
    """Streams `words` one at a time every `step_s`, far faster than Slack may be edited."""

    def __init__(self, words: Sequence[str], step_s: float = 0.05) -> None:
        self.words = list(words)
        self.step_s = step_s
        self.partials = 0

    async def answer(self, inbound: Inbound, history: Sequence[Turn],
                     sink: PartialSink | None = None) -> Answer:
        text = ""
        for word in self.words:
            text = f"{text} {word}".strip()
            if sink is not None:
                self.partials += 1
                await sink(text)
            await asyncio.sleep(self.step_s)
        reply = Reply(text, ReplyKind.ANSWER, citations=(CITATION,), reason="answered")
        return Answer(reply, escalate=False, reason="answered", confidence=0.9,
                      article_id=CITATION.article_id)


class GatedAnswerer:
    """Answers only once the test opens the gate: stands for a busy or slow engine."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def answer(self, inbound: Inbound, history: Sequence[Turn],
                     sink: PartialSink | None = None) -> Answer:
        self.started.set()
        await self.gate.wait()
        reply = Reply("Done thinking.", ReplyKind.ANSWER, citations=(CITATION,))
        return Answer(reply, escalate=False, reason="answered", confidence=0.9)

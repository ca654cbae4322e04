"""The 3-5 line conversation summary on a ticket card, written by the engine.

When there is no LLM, it fails, times out or writes something unusable, the card shows the
last customer/bot messages instead: agents always get something to read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bot.models import Turn
from bot.ports import LLM

log = logging.getLogger(__name__)

MIN_LINES, MAX_LINES = 3, 5
LINE_CHARS = 160

PROMPT = ("You summarise customer-support conversations for the human agent taking over. "
          "Write 3 to 5 short lines, one fact per line, no greeting: what the customer "
          "wants, what they already tried or were told, and what is still open.")


def _clip(text: str, limit: int = LINE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def fallback_summary(turns: Sequence[Turn]) -> list[str]:
    """The last messages, newest last, as 'customer: ...' lines."""
    spoken = [t for t in turns if t.role in ("customer", "bot", "agent") and t.text.strip()]
    lines = [_clip(f"{t.role}: {t.text}") for t in spoken[-MAX_LINES:]]
    return lines or ["(no messages yet)"]


def _parse(text: str) -> list[str]:
    lines = []
    for raw in text.splitlines():
        line = raw.strip().lstrip("-*•0123456789.) ").strip()
        if line:
            lines.append(_clip(line))
    return lines[:MAX_LINES]


async def summarize(turns: Sequence[Turn], llm: LLM | None, timeout_s: float = 20.0,
                    max_tokens: int = 160) -> list[str]:
    if llm is None or not turns:
        return fallback_summary(turns)
    transcript = "\n".join(f"{t.role}: {t.text}" for t in turns[-12:])
    messages = [{"role": "system", "content": PROMPT},
                {"role": "user", "content": transcript}]

    async def generate() -> str:
        parts = []
        async for chunk in llm.stream_chat(messages, max_tokens=max_tokens):
            parts.append(chunk.text)
            if chunk.finish_reason == "error":
                raise RuntimeError("engine reported an error")
        return "".join(parts)

    try:
        lines = _parse(await asyncio.wait_for(generate(), timeout_s))
    except Exception:  # the engine being down must not block the handoff
        log.warning("summary by the engine failed; using the last messages", exc_info=True)
        return fallback_summary(turns)
    if len(lines) < MIN_LINES:
        # Too short to be a useful summary: pad with the latest messages so agents see context.
        lines += [ln for ln in fallback_summary(turns) if ln not in lines]
        lines = lines[:MAX_LINES]
    return lines

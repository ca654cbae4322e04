"""The small Protocols through which bot/ reaches storage, the platforms and the engine.

bot/ never imports an adapter or a platform library; adapters implement Outbox, the stores
implement ConversationStore, and the engine clients satisfy the answerers' needs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from bot.models import (
    Conversation,
    ConversationKey,
    ConversationState,
    Inbound,
    Reply,
    Turn,
)


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class LockTimeout(Exception):
    """Another handler kept a conversation's lock for longer than we were willing to wait."""


class ConversationStore(Protocol):
    """Conversation state and history, dedup, rate limits and per-conversation locks."""

    async def first_delivery(self, platform: str, event_id: str, ttl_s: int) -> bool:
        """True exactly once per (platform, event id) within ttl_s: later deliveries are retries."""
        ...

    async def allow_message(self, platform: str, user: str, limit: int, window_s: float) -> bool:
        """Sliding-window rate limit: True while the user sent fewer than limit in window_s."""
        ...

    def lock(self, key: ConversationKey, ttl_s: float = 60.0, wait_s: float = 30.0,
             order: float | None = None) -> AbstractAsyncContextManager[None]:
        """Hold the conversation so its messages are handled one at a time, in order.

        Waiters are served by `order` (the message's platform timestamp; arrival time when
        None), so two messages that arrive together are handled in the order they were sent.
        """
        ...

    async def load(self, key: ConversationKey, max_turns: int = 20) -> Conversation: ...

    async def transition(self, key: ConversationKey, allowed_from: Iterable[ConversationState],
                         to: ConversationState, fields: dict[str, str] | None = None) -> bool:
        """Atomically move to `to` (and set fields) only if the state is in allowed_from."""
        ...

    async def set_fields(self, key: ConversationKey, fields: dict[str, str]) -> None: ...

    async def append_turn(self, key: ConversationKey, turn: Turn) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class Outbox(Protocol):
    """Where replies to one conversation go. Bound by the adapter to a thread or DM."""

    async def post(self, reply: Reply) -> str:
        """Send a new message; returns its platform message id."""
        ...

    async def edit(self, message_id: str, reply: Reply) -> None:
        """Replace an earlier message (streaming updates, the final answer)."""
        ...


# Called with the text written so far while an answer streams.
PartialSink = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Answer:
    """What an answerer decided: a reply to send, and whether to hand over to a person."""

    reply: Reply
    escalate: bool
    reason: str  # reason code, e.g. "answered", "low_confidence", "asked_for_human"
    confidence: float = 0.0
    article_id: str = ""


class Answerer(Protocol):
    async def answer(self, inbound: Inbound, history: Sequence[Turn],
                     sink: PartialSink | None = None) -> Answer: ...


class GenerationChunk(Protocol):
    """One streamed piece of a generation: new text, and when finished the reason.

    A Protocol so the engine's own chunk type satisfies it without importing bot/.
    """

    @property
    def text(self) -> str: ...

    @property
    def token_ids(self) -> Sequence[int]: ...

    @property
    def logprobs(self) -> Sequence[float]: ...

    @property
    def finish_reason(self) -> str | None:
        """"stop" | "length" | "cancelled" | "error" when finished; None while streaming."""
        ...


class LLM(Protocol):
    """The engine as the bot sees it: in-process, a Redis worker, or an OpenAI-style server."""

    def stream_chat(self, messages: Sequence[dict[str, str]], max_tokens: int = 256,
                    stop: Sequence[str] = (), temperature: float = 0.0,
                    ) -> AsyncIterator[GenerationChunk]: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class Embedder(Protocol):
    """A sentence encoder as retrieval sees it (engine.embedder.Embedder satisfies it).

    `embed` is synchronous model compute: callers on the event loop use asyncio.to_thread.
    It returns unit-length rows [N, dim], anything numpy.asarray turns into float32.
    """

    @property
    def name(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> Any: ...

"""Fakes shared by the handoff / admin tests: a settable clock, a recording AgentDesk."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from bot.admin_store import KeyValue, MemoryKeyValue, RedisKeyValue
from bot.analytics import Analytics
from bot.answer_kb import KnowledgeBaseAnswerer
from bot.handoff import Handoff
from bot.keys import Keys
from bot.knowledge import load_markdown_dir
from bot.live_config import ConfigSnapshot, LiveConfig
from bot.models import ConversationKey, Inbound
from bot.ports import LLM, Answerer, ConversationStore
from bot.service import BotPolicy, SupportBot
from bot.store_memory import MemoryStore
from bot.store_redis import RedisStore
from bot.tickets import TicketCard, TicketStore
from bot.tickets_memory import MemoryTicketStore
from bot.tickets_redis import RedisTicketStore
from tests.conftest import RecordingOutbox

KB_DIR = Path(__file__).resolve().parent.parent / "examples" / "kb"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class RecordingDesk:
    """An AgentDesk that remembers cards, card updates, agent notices and customer posts."""

    def __init__(self, fail_cards: int = 0) -> None:
        self._ids = itertools.count(1)
        self.cards: dict[str, TicketCard] = {}
        self.card_log: list[tuple[str, str, TicketCard]] = []  # (op, card id, card)
        self.card_channels: list[str] = []  # the channel each posted card was sent to
        self.agent_notices: list[tuple[str, str, str]] = []  # (channel, text, card id)
        self.outboxes: dict[ConversationKey, RecordingOutbox] = {}
        self.fail_cards = fail_cards  # the next N post_card calls raise

    async def post_card(self, channel: str, card: TicketCard) -> str:
        if self.fail_cards > 0:
            self.fail_cards -= 1
            raise ConnectionError("platform down")
        card_id = f"card{next(self._ids)}"
        self.cards[card_id] = card
        self.card_channels.append(channel)
        self.card_log.append(("post", card_id, card))
        return card_id

    async def update_card(self, card_id: str, card: TicketCard) -> None:
        assert card_id in self.cards, f"update of unknown card {card_id}"
        self.cards[card_id] = card
        self.card_log.append(("update", card_id, card))

    async def notify_agents(self, channel: str, text: str, card_id: str = "") -> None:
        self.agent_notices.append((channel, text, card_id))

    def customer_outbox(self, key: ConversationKey) -> RecordingOutbox:
        return self.outboxes.setdefault(key, RecordingOutbox())

    async def link(self, key: ConversationKey) -> str:
        return f"https://chat.example/{key.channel}/{key.thread}"

    def customer_texts(self, key: ConversationKey) -> list[str]:
        return [r.text for r in self.customer_outbox(key).final()]


@dataclass(frozen=True)
class Chunk:
    text: str
    finish_reason: str | None = None
    token_ids: Sequence[int] = ()
    logprobs: Sequence[float] = ()


class ScriptedLLM:
    """An LLM port that streams a fixed text, or raises, to test the summary paths."""

    def __init__(self, text: str = "", fail: bool = False) -> None:
        self.text = text
        self.fail = fail
        self.calls = 0

    async def _stream(self) -> AsyncIterator[Chunk]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("engine unavailable")
        for word in self.text.split(" "):
            yield Chunk(word + " ")
        yield Chunk("", finish_reason="stop")

    def stream_chat(self, messages: Sequence[dict[str, str]], max_tokens: int = 256,
                    stop: Sequence[str] = (), temperature: float = 0.0,
                    ) -> AsyncIterator[Chunk]:
        return self._stream()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise NotImplementedError


@dataclass
class Stack:
    """A SupportBot with handoff, tickets, live config and analytics, on one store kind."""

    bot: SupportBot
    handoff: Handoff
    tickets: TicketStore
    live: LiveConfig
    analytics: Analytics
    desk: RecordingDesk
    clock: FakeClock
    store: ConversationStore


def make_stack(kind: str, keys: Keys, answerer: Answerer | None = None,
               llm: LLM | None = None, defaults: ConfigSnapshot | None = None,
               clock: FakeClock | None = None, client: aioredis.Redis | None = None,
               policy: BotPolicy | None = None, desk: RecordingDesk | None = None) -> Stack:
    """kind "memory" or "redis" (the caller closes `client`, shared by every redis part)."""
    clock = clock or FakeClock()
    store: ConversationStore
    tickets: TicketStore
    kv: KeyValue
    if kind == "memory":
        store, tickets, kv = MemoryStore(clock), MemoryTicketStore(clock), MemoryKeyValue()
    else:
        assert client is not None
        store, tickets, kv = RedisStore(client, keys), RedisTicketStore(client, keys), \
            RedisKeyValue(client)
    desk = desk or RecordingDesk()
    live = LiveConfig(kv, keys, defaults or ConfigSnapshot(), refresh_s=0.0)
    analytics = Analytics(kv, keys)
    handoff = Handoff(tickets, store, {"slack": desk}, live, llm, clock, analytics)
    bot = SupportBot(store, answerer or KnowledgeBaseAnswerer(load_markdown_dir(KB_DIR)),
                     policy or BotPolicy(stream_interval_s=0.0), clock, handoff=handoff,
                     live=live, analytics=analytics)
    return Stack(bot, handoff, tickets, live, analytics, desk, clock, store)


def msg(text: str, event: str, user: str = "U1", thread: str = "t1",
        ts: float = 1_700_000_000.0) -> Inbound:
    return Inbound("slack", "T1", "C1", thread, user, text, event_id=event, user_name="Ann",
                   ts=ts)

"""Support analytics from Redis counters per day (UTC) and channel.

Recorded as things happen (SupportBot, Handoff, Feedback call in here); read by
`/support stats` and `supportbot stats`. Figures:

* conversations, bot answers, escalations (rate by reason), claims, human resolutions;
* resolved by the bot: a conversation the bot answered with no escalation and no
  Not-helpful within `resolve_window_h` hours of its first answer;
* first-response time and time to claim (p50 / p90, nearest rank);
* CSAT = helpful / (helpful + not helpful);
* the most frequent unanswered questions, grouped by embedding similarity (exact text
  when no embedder is configured).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.admin_store import KeyValue
from bot.keys import Keys
from bot.models import ConversationKey

SEP = "|"


class Embedder(Protocol):
    """Text -> unit vectors. Structural, so the engine's client (or bot/ports.py's Embedder
    when it exists) fits without an import."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d")


def channel_of(key: ConversationKey) -> str:
    return f"{key.platform}:{key.channel}"


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0-100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class StatsReport:
    days: list[str]
    conversations: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)
    bot_answers: int = 0
    resolved_by_bot: int = 0
    escalations: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    claims: int = 0
    human_resolved: int = 0
    first_response_p50: float | None = None
    first_response_p90: float | None = None
    time_to_claim_p50: float | None = None
    time_to_claim_p90: float | None = None
    helpful: int = 0
    not_helpful: int = 0
    unanswered: list[tuple[str, int]] = field(default_factory=list)
    per_day: list[tuple[str, int, int]] = field(default_factory=list)  # day, convs, escalations

    @property
    def escalation_rate(self) -> float | None:
        return self.escalations / self.conversations if self.conversations else None

    @property
    def resolved_rate(self) -> float | None:
        return self.resolved_by_bot / self.conversations if self.conversations else None

    @property
    def csat(self) -> float | None:
        votes = self.helpful + self.not_helpful
        return self.helpful / votes if votes else None

    def reason_rates(self) -> dict[str, float]:
        if not self.conversations:
            return {}
        return {r: n / self.conversations for r, n in sorted(self.by_reason.items())}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 120 else f"{value / 60:.1f}min"


def report_lines(r: StatsReport) -> list[str]:
    """The stats as aligned text lines (CLI table and the `/support stats` reply)."""
    rows = [
        ("period", f"{r.days[0]}..{r.days[-1]} ({len(r.days)} days, UTC)"),
        ("conversations", str(r.conversations)),
        ("resolved by bot", f"{r.resolved_by_bot} ({_pct(r.resolved_rate)})"),
        ("escalations", f"{r.escalations} ({_pct(r.escalation_rate)})"),
    ]
    rows += [(f"  reason {reason}", _pct(rate)) for reason, rate in r.reason_rates().items()]
    rows += [
        ("first response p50/p90", f"{_secs(r.first_response_p50)} / "
                                   f"{_secs(r.first_response_p90)}"),
        ("time to claim p50/p90", f"{_secs(r.time_to_claim_p50)} / "
                                  f"{_secs(r.time_to_claim_p90)}"),
        ("CSAT", f"{_pct(r.csat)} ({r.helpful} helpful, {r.not_helpful} not helpful)"),
    ]
    rows += [(f"  channel {ch}", str(n)) for ch, n in sorted(r.by_channel.items())]
    width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(width)}  {value}" for label, value in rows]
    if r.unanswered:
        lines.append("top unanswered questions:")
        lines += [f"  {n}x  {text}" for text, n in r.unanswered]
    return lines


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a)) or 1.0
    nb = math.sqrt(sum(y * y for y in b)) or 1.0
    return dot / (na * nb)


async def group_questions(texts: Sequence[str], embedder: Embedder | None,
                          threshold: float = 0.8, top: int = 5) -> list[tuple[str, int]]:
    """Greedy clustering: each question joins the first group whose first question is at
    least `threshold` similar. Returns (representative, count), most frequent first."""
    if not texts:
        return []
    if embedder is None:
        counts = Counter(" ".join(t.lower().split()) for t in texts)
        return counts.most_common(top)
    vectors = await embedder.embed(list(texts))
    groups: list[tuple[str, list[float], int]] = []
    for text, vec in zip(texts, vectors, strict=True):
        for i, (rep, rep_vec, n) in enumerate(groups):
            if _cosine(vec, rep_vec) >= threshold:
                groups[i] = (rep, rep_vec, n + 1)
                break
        else:
            groups.append((text, list(vec), 1))
    ranked = sorted(groups, key=lambda g: -g[2])
    return [(rep, n) for rep, _, n in ranked[:top]]


class Analytics:
    def __init__(self, kv: KeyValue, keys: Keys, embedder: Embedder | None = None,
                 ttl_days: int = 120, resolve_window_h: float = 24.0,
                 max_unanswered: int = 500) -> None:
        self.kv = kv
        self.keys = keys
        self.embedder = embedder
        self.ttl_s = ttl_days * 86400
        self.resolve_window_h = resolve_window_h
        self.max_unanswered = max_unanswered

    async def _count(self, ts: float, name: str, key: ConversationKey, amount: int = 1) -> None:
        await self.kv.hincrby(self.keys.stats(day_of(ts)), f"{name}{SEP}{channel_of(key)}",
                              amount, self.ttl_s)

    async def _sample(self, ts: float, metric: str, key: ConversationKey, value: float) -> None:
        await self.kv.push_capped(self.keys.stats_samples(day_of(ts), metric),
                                  f"{channel_of(key)}{SEP}{value:.3f}", 100_000, self.ttl_s)

    async def _fact(self, ts: float, kind: str, key: ConversationKey, episode: str) -> None:
        # A thread can hold several conversations (a new one starts after a resolve): the
        # episode (its start time, kept in the conversation's fields) tells them apart.
        name = self.keys.stats_conversations(day_of(ts), kind)
        conv = f"{key.id}@{episode}"
        value = json.dumps({"ts": ts, "channel": channel_of(key)})
        if kind == "answered":  # the first answer of the day starts the window
            await self.kv.hsetnx(name, conv, value, self.ttl_s)
        else:  # the latest escalation / Not helpful of the day is the one that can spoil it
            await self.kv.hset(name, {conv: value}, self.ttl_s)

    # ---- recording --------------------------------------------------------------------------

    async def conversation_started(self, key: ConversationKey, ts: float) -> None:
        await self._count(ts, "conversations", key)

    async def first_response(self, key: ConversationKey, seconds: float, ts: float) -> None:
        await self._sample(ts, "first_response", key, max(0.0, seconds))

    async def answered(self, key: ConversationKey, ts: float, episode: str = "") -> None:
        await self._count(ts, "bot_answers", key)
        await self._fact(ts, "answered", key, episode)

    async def escalated(self, key: ConversationKey, reason: str, ts: float,
                        question: str = "", episode: str = "") -> None:
        await self._count(ts, "escalations", key)
        await self._count(ts, f"reason{SEP}{reason or 'unknown'}", key)
        await self._fact(ts, "spoiled", key, episode)
        if question.strip():
            await self.kv.push_capped(
                self.keys.stats_unanswered(day_of(ts)),
                json.dumps({"channel": channel_of(key), "text": question.strip()[:300]}),
                self.max_unanswered, self.ttl_s)

    async def claimed(self, key: ConversationKey, created: float, ts: float) -> None:
        await self._count(ts, "claims", key)
        await self._sample(ts, "time_to_claim", key, ts - created)

    async def human_resolved(self, key: ConversationKey, ts: float) -> None:
        await self._count(ts, "human_resolved", key)

    async def feedback(self, key: ConversationKey, helpful: bool, ts: float,
                       episode: str = "") -> None:
        await self._count(ts, "helpful" if helpful else "not_helpful", key)
        if not helpful:
            await self._fact(ts, "spoiled", key, episode)

    # ---- reading ----------------------------------------------------------------------------

    async def report(self, days: int, now: float) -> StatsReport:
        if days < 1:
            raise ValueError("days must be at least 1")
        today = datetime.fromtimestamp(now, UTC)
        names = [(today - timedelta(days=d)).strftime("%Y%m%d") for d in range(days - 1, -1, -1)]
        r = StatsReport(days=names)
        first_response: list[float] = []
        to_claim: list[float] = []
        questions: list[str] = []
        answered: dict[str, float] = {}
        spoiled: dict[str, list[float]] = {}
        for day in names:
            counters = await self.kv.hgetall(self.keys.stats(day))
            day_convs = day_escalations = 0
            for name, raw in counters.items():
                parts = name.split(SEP)
                n = int(raw)
                if parts[0] == "conversations":
                    day_convs += n
                    r.by_channel[parts[1]] = r.by_channel.get(parts[1], 0) + n
                elif parts[0] == "escalations":
                    day_escalations += n
                elif parts[0] == "reason":
                    r.by_reason[parts[1]] = r.by_reason.get(parts[1], 0) + n
                elif parts[0] in ("bot_answers", "claims", "human_resolved", "helpful",
                                  "not_helpful"):
                    setattr(r, parts[0], getattr(r, parts[0]) + n)
            r.conversations += day_convs
            r.escalations += day_escalations
            r.per_day.append((day, day_convs, day_escalations))
            first_response += await self._values(day, "first_response")
            to_claim += await self._values(day, "time_to_claim")
            for raw in await self.kv.lrange(self.keys.stats_unanswered(day)):
                questions.append(str(json.loads(raw)["text"]))
            for conv, raw in (await self.kv.hgetall(
                    self.keys.stats_conversations(day, "answered"))).items():
                ts = float(json.loads(raw)["ts"])
                answered[conv] = min(ts, answered.get(conv, ts))
        # A Not-helpful or an escalation may land a day after the answer: look past the range.
        extra = math.ceil(self.resolve_window_h / 24)
        spoil_days = names + [(today + timedelta(days=d)).strftime("%Y%m%d")
                              for d in range(1, extra + 1)]
        for day in spoil_days:
            for conv, raw in (await self.kv.hgetall(
                    self.keys.stats_conversations(day, "spoiled"))).items():
                spoiled.setdefault(conv, []).append(float(json.loads(raw)["ts"]))
        window = self.resolve_window_h * 3600
        r.resolved_by_bot = sum(
            1 for conv, ts in answered.items()
            if not any(ts <= s <= ts + window for s in spoiled.get(conv, [])))
        r.first_response_p50 = percentile(first_response, 50)
        r.first_response_p90 = percentile(first_response, 90)
        r.time_to_claim_p50 = percentile(to_claim, 50)
        r.time_to_claim_p90 = percentile(to_claim, 90)
        r.unanswered = await group_questions(questions, self.embedder)
        return r

    async def _values(self, day: str, metric: str) -> list[float]:
        raw = await self.kv.lrange(self.keys.stats_samples(day, metric))
        return [float(item.rsplit(SEP, 1)[1]) for item in raw]

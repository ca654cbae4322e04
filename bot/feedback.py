"""Helpful / Not helpful on bot answers, stored by article and by conversation."""

from __future__ import annotations

import json
from dataclasses import dataclass

from bot.admin_store import KeyValue
from bot.analytics import Analytics
from bot.keys import Keys
from bot.models import ConversationKey
from bot.redact import redact

FEEDBACK_TTL_S = 365 * 86400


@dataclass(frozen=True)
class ArticleFeedback:
    article_id: str
    helpful: int
    not_helpful: int


class Feedback:
    def __init__(self, kv: KeyValue, keys: Keys, analytics: Analytics | None = None) -> None:
        self.kv = kv
        self.keys = keys
        self.analytics = analytics

    async def record(self, key: ConversationKey, article_id: str, user: str, helpful: bool,
                     ts: float, comment: str = "", episode: str = "") -> None:
        """One vote. The comment is redacted like every customer text before it is stored."""
        verdict = "helpful" if helpful else "not_helpful"
        if article_id:
            await self.kv.hincrby(self.keys.feedback_article(article_id), verdict, 1,
                                  FEEDBACK_TTL_S)
        record = {"article_id": article_id, "user": user, "helpful": helpful, "ts": ts,
                  "comment": redact(comment.strip())[:1000]}
        await self.kv.push_capped(self.keys.feedback_conversation(key), json.dumps(record),
                                  200, FEEDBACK_TTL_S)
        if self.analytics is not None:
            await self.analytics.feedback(key, helpful, ts, episode)

    async def for_article(self, article_id: str) -> ArticleFeedback:
        counts = await self.kv.hgetall(self.keys.feedback_article(article_id))
        return ArticleFeedback(article_id, int(counts.get("helpful", 0)),
                               int(counts.get("not_helpful", 0)))

    async def for_conversation(self, key: ConversationKey) -> list[dict[str, object]]:
        return [json.loads(r) for r in await self.kv.lrange(self.keys.feedback_conversation(key))]

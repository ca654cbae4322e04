"""The knowledge-base answerer: pick the best article lexically and reply with it, cited.

No generation: the reply is the article's own text. When nothing matches well enough, the
answer is an escalation so the customer is told a person will follow up.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.answerer import HANDOFF_TEXT
from bot.bm25 import BM25Index
from bot.knowledge import Article, KnowledgeBase
from bot.models import Citation, Inbound, Reply, ReplyKind, Turn
from bot.ports import Answer, PartialSink


def citation_for(article: Article) -> Citation:
    return Citation(article_id=article.id, title=article.title, url=article.url)


def handoff_reply(reason: str) -> Reply:
    return Reply(text=HANDOFF_TEXT, kind=ReplyKind.HANDOFF, reason=reason)


class KnowledgeBaseAnswerer:
    def __init__(self, kb: KnowledgeBase, min_coverage: float = 0.5) -> None:
        self.kb = kb
        self.min_coverage = min_coverage
        self._index = BM25Index([(f"{a.title}\n{a.body}", *a.questions) for a in kb.articles])

    async def answer(self, inbound: Inbound, history: Sequence[Turn],
                     sink: PartialSink | None = None) -> Answer:
        hits = self._index.search(inbound.text, k=1)
        if not hits or hits[0].coverage < self.min_coverage:
            confidence = hits[0].coverage if hits else 0.0
            return Answer(handoff_reply("low_confidence"), escalate=True,
                          reason="low_confidence", confidence=confidence)
        article = self.kb.articles[hits[0].doc]
        if article.escalate == "always":
            return Answer(handoff_reply("article_escalates"), escalate=True,
                          reason="article_escalates", confidence=hits[0].coverage,
                          article_id=article.id)
        reply = Reply(text=article.body, kind=ReplyKind.ANSWER,
                      citations=(citation_for(article),), reason="answered")
        return Answer(reply, escalate=False, reason="answered", confidence=hits[0].coverage,
                      article_id=article.id)

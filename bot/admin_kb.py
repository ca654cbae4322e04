"""`/support kb` over the Markdown knowledge base: list, lexical search, reload.

A reload that finds no valid article keeps the previous knowledge base (and says why), so
one bad deploy of the articles never leaves the bot with nothing to answer from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.admin import KbHit
from bot.bm25 import BM25Index
from bot.knowledge import KnowledgeBase, load_markdown_dir


class MarkdownKbAdmin:
    def __init__(self, kb_dir: Path, kb: KnowledgeBase,
                 on_reload: Callable[[KnowledgeBase], None] | None = None) -> None:
        self.kb_dir = kb_dir
        self.on_reload = on_reload  # e.g. swap the answerer onto the new articles
        self._use(kb)

    def _use(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self._index = BM25Index([(a.title, a.body, *a.questions) for a in kb.articles])

    def list_articles(self) -> Sequence[KbHit]:
        return [KbHit(a.id, a.title) for a in self.kb.articles]

    async def search(self, query: str, k: int = 5) -> Sequence[KbHit]:
        hits = self._index.search(query, k=k)
        return [KbHit(self.kb.articles[h.doc].id, self.kb.articles[h.doc].title, h.coverage)
                for h in hits]

    async def reload(self) -> str:
        kb = await asyncio.to_thread(load_markdown_dir, self.kb_dir)
        if not kb.articles:
            problems = "; ".join(str(p) for p in kb.problems[:3]) or "no articles found"
            raise ValueError(f"{self.kb_dir}: {problems}")
        self._use(kb)
        if self.on_reload is not None:
            self.on_reload(kb)
        skipped = f", {len(kb.problems)} skipped ({kb.problems[0]})" if kb.problems else ""
        return f"{len(kb.articles)} articles{skipped}"

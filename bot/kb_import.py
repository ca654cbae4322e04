"""Knowledge-base imports: CSV (`question,answer[,id,title]`) and JSONL with the same keys.

Rows that share an article (same `id`, or without ids the same answer text) become one
article whose example questions are all the rows' questions. A bad row is reported with its
file and line and skipped; every other row still loads.

`load_knowledge(path)` is the one entry point the CLI and the bot use: a directory loads its
Markdown articles plus every *.csv and *.jsonl file in it; a single file loads by extension.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bot.knowledge import Article, KbProblem, KnowledgeBase, load_markdown_dir

REQUIRED_COLUMNS = ("question", "answer")
OPTIONAL_COLUMNS = ("id", "title", "url")
_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str, limit: int = 60) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")[:limit].rstrip("-")


@dataclass
class _Draft:
    id: str
    answer: str
    title: str
    url: str
    source: str
    questions: list[str] = field(default_factory=list)


class _Collector:
    """Groups imported rows into articles while keeping the order they first appear in."""

    def __init__(self, source: str, kb: KnowledgeBase) -> None:
        self.source = source
        self.kb = kb
        self.drafts: dict[str, _Draft] = {}
        self._by_answer: dict[str, str] = {}

    def add(self, line: int, row: dict[str, str]) -> None:
        question = (row.get("question") or "").strip()
        answer = (row.get("answer") or "").strip()
        if not question or not answer:
            missing = [n for n, v in (("question", question), ("answer", answer)) if not v]
            self.problem(line, f"empty {' and '.join(missing)}; row skipped")
            return
        article_id = (row.get("id") or "").strip()
        title = (row.get("title") or "").strip()
        if not article_id:
            article_id = self._by_answer.get(answer) or self._new_id(title or question, answer)
        if ":" in article_id or "/" in article_id:
            self.problem(line, f"id {article_id!r} may not contain ':' or '/'; row skipped")
            return
        draft = self.drafts.get(article_id)
        if draft is None:
            draft = _Draft(article_id, answer, title or question, (row.get("url") or "").strip(),
                           f"{self.source}:{line}")
            self.drafts[article_id] = draft
            self._by_answer.setdefault(answer, article_id)
        elif draft.answer != answer:
            self.problem(line, f"id {article_id!r} already has a different answer "
                               f"(first at {draft.source}); row skipped")
            return
        if question not in draft.questions:
            draft.questions.append(question)

    def _new_id(self, text: str, answer: str) -> str:
        base = slugify(text) or "article"
        candidate = base
        if candidate in self.drafts:  # same words, different answer: keep both apart
            candidate = f"{base}-{hashlib.sha1(answer.encode()).hexdigest()[:6]}"
        return candidate

    def problem(self, line: int, message: str) -> None:
        self.kb.problems.append(KbProblem(self.source, line, message))

    def articles(self) -> list[Article]:
        return [Article(id=d.id, title=d.title, body=d.answer, url=d.url,
                        questions=tuple(d.questions), source=d.source)
                for d in self.drafts.values()]


def load_csv(path: str | Path) -> KnowledgeBase:
    """Articles from a CSV file with a header row naming at least `question` and `answer`."""
    kb = KnowledgeBase()
    source = str(path)
    collector = _Collector(source, kb)
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                collector.problem(1, f"CSV header must name columns {REQUIRED_COLUMNS} "
                                     f"(missing {missing}); file skipped")
                return kb
            reader.fieldnames = header
            for row in reader:
                line = reader.line_num
                if None in row:  # more cells than header columns
                    collector.problem(line, "more cells than header columns; row skipped")
                    continue
                collector.add(line, {k: v or "" for k, v in row.items()})
    except (UnicodeDecodeError, csv.Error) as exc:
        collector.problem(0, f"cannot read CSV: {exc}")
    kb.articles.extend(collector.articles())
    return kb


class JsonLineError(ValueError):
    """A line of a JSONL file that is not valid JSON."""


def iter_jsonl(text: str) -> Iterator[tuple[int, object]]:
    """(1-based line number, parsed value or JsonLineError) for each non-blank line."""
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as exc:
            yield number, JsonLineError(f"not valid JSON ({exc.msg})")


def load_jsonl(path: str | Path) -> KnowledgeBase:
    """Articles from a JSON Lines file: one object per line with `question` and `answer`."""
    kb = KnowledgeBase()
    collector = _Collector(str(path), kb)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        collector.problem(1, f"not UTF-8 text: {exc}")
        return kb
    for number, obj in iter_jsonl(text):
        if isinstance(obj, JsonLineError):
            collector.problem(number, f"{obj}; line skipped")
            continue
        if not isinstance(obj, dict):
            collector.problem(number, "each line must be a JSON object; line skipped")
            continue
        bad = [k for k in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
               if k in obj and not isinstance(obj[k], str | int | float)]
        if bad:
            collector.problem(number, f"{bad} must be strings; line skipped")
            continue
        collector.add(number, {k: str(v) for k, v in obj.items() if v is not None})
    kb.articles.extend(collector.articles())
    return kb


def load_knowledge(path: str | Path) -> KnowledgeBase:
    """A directory (Markdown + CSV + JSONL inside it) or one .md/.csv/.jsonl file.

    Articles keep the first definition of an id; a later duplicate is reported and skipped.
    """
    root = Path(path)
    if root.is_dir():
        kb = load_markdown_dir(root)
        parts = [load_csv(p) for p in sorted(root.rglob("*.csv"))]
        parts += [load_jsonl(p) for p in sorted(root.rglob("*.jsonl"))]
    elif root.is_file():
        kb = KnowledgeBase()
        suffix = root.suffix.lower()
        if suffix == ".csv":
            parts = [load_csv(root)]
        elif suffix in (".jsonl", ".ndjson"):
            parts = [load_jsonl(root)]
        elif suffix == ".md":
            parts = [load_markdown_dir(root.parent)]
            parts[0].articles = [a for a in parts[0].articles if Path(a.source) == root]
            parts[0].problems = [p for p in parts[0].problems if Path(p.path) == root]
        else:
            raise ValueError(f"{root}: unknown knowledge-base file type (want a directory, "
                             ".md, .csv or .jsonl)")
    else:
        raise FileNotFoundError(f"knowledge base not found: {root}")
    seen = {a.id: a.source for a in kb.articles}
    for part in parts:
        kb.problems.extend(part.problems)
        for article in part.articles:
            if article.id in seen:
                kb.problems.append(KbProblem(article.source, 0, f"duplicate id {article.id!r} "
                                                                f"(first in {seen[article.id]})"))
                continue
            seen[article.id] = article.source
            kb.articles.append(article)
    return kb

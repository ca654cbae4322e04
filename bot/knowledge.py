"""Knowledge base: Markdown articles with YAML front matter, loaded from a directory.

A malformed article is reported (file and line) and skipped; the rest still load, so one bad
edit never takes the whole knowledge base down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

ESCALATE_VALUES = ("never", "always")


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    body: str
    url: str = ""
    questions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    escalate: str = "never"  # "never" | "always" (always: hand the customer to a person)
    source: str = ""  # file it came from, for error messages and `kb list`


@dataclass(frozen=True)
class KbProblem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class KnowledgeBase:
    articles: list[Article] = field(default_factory=list)
    problems: list[KbProblem] = field(default_factory=list)

    def by_id(self) -> dict[str, Article]:
        return {a.id: a for a in self.articles}


class ArticleError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _str_list(meta: dict[str, object], name: str) -> tuple[str, ...]:
    value = meta.get(name, [])
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise ArticleError(1, f"'{name}' must be a list of strings")
    return tuple(str(v) for v in value)


def parse_article(text: str, default_id: str, source: str = "") -> Article:
    """Parse one Markdown article; raises ArticleError with the 1-based line of the problem."""
    meta: dict[str, object] = {}
    body = text
    body_line = 1
    if text.startswith("---"):
        lines = text.splitlines()
        try:
            end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
        except StopIteration:
            raise ArticleError(1, "front matter opened with '---' is never closed") from None
        try:
            loaded = yaml.safe_load("\n".join(lines[1:end])) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = (mark.line + 2) if mark is not None else 1
            raise ArticleError(line, f"front matter is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ArticleError(2, "front matter must be a mapping of keys to values")
        meta = {str(k): v for k, v in loaded.items()}
        body = "\n".join(lines[end + 1:])
        body_line = end + 2
    body = body.strip()
    if not body:
        raise ArticleError(body_line, "article has no body text")
    escalate = str(meta.get("escalate", "never")).lower()
    if escalate not in ESCALATE_VALUES:
        raise ArticleError(1, f"'escalate' must be one of {ESCALATE_VALUES}, not {escalate!r}")
    article_id = str(meta.get("id", default_id)).strip()
    if not article_id:
        raise ArticleError(1, "'id' is empty")
    title = str(meta.get("title") or _first_heading(body) or article_id)
    return Article(id=article_id, title=title, body=body, url=str(meta.get("url", "") or ""),
                   questions=_str_list(meta, "questions"), tags=_str_list(meta, "tags"),
                   escalate=escalate, source=source)


def _first_heading(body: str) -> str:
    for line in body.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def load_markdown_dir(directory: str | Path) -> KnowledgeBase:
    """Load every *.md file under directory (sorted, so ids and order are reproducible)."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"knowledge base directory not found: {root}")
    kb = KnowledgeBase()
    seen: dict[str, str] = {}
    for path in sorted(root.rglob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        try:
            article = parse_article(path.read_text(encoding="utf-8"), path.stem, str(path))
        except ArticleError as exc:
            kb.problems.append(KbProblem(str(path), exc.line, str(exc)))
            continue
        except UnicodeDecodeError as exc:
            kb.problems.append(KbProblem(str(path), 1, f"not UTF-8 text: {exc}"))
            continue
        if article.id in seen:
            kb.problems.append(KbProblem(str(path), 1, f"duplicate id {article.id!r} "
                                                      f"(first in {seen[article.id]})"))
            continue
        seen[article.id] = str(path)
        kb.articles.append(article)
    return kb

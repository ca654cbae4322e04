"""Platform-neutral pieces of rendering shared by the Slack and Discord adapters."""

from __future__ import annotations

from bot.models import Citation


def split_text(text: str, limit: int) -> list[str]:
    """Split text into chunks of at most `limit` characters, preferring paragraph, line and
    word boundaries so no word is cut unless a single word is longer than the limit."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]  # a boundary right after the limit still counts
        cut = max(window.rfind("\n"), window.rfind(" "))
        if cut <= 0:
            cut = limit
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not chunks:
        chunks.append(rest)
    return chunks


def citation_line(c: Citation) -> str:
    """'Title (url)' or just 'Title'; adapters turn this into their own link markup."""
    return f"{c.title} ({c.url})" if c.url else c.title

"""Render bot Replies as Slack Block Kit messages, within Slack's limits.

Slack allows 3,000 characters in a section block's text and 50 blocks per message, so a long
reply becomes several section blocks and, past 50 blocks, several messages ("pages"). The
citations and buttons go on the last page. Model and article text is escaped, so it can never
produce a mention (`<!channel>`, `<@U…>`) or a link Slack would expand on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.actions import Action
from bot.models import Citation, Reply
from bot.present import answer_button_value, button_label, buttons_for
from bot.render import split_text

SECTION_LIMIT = 3000  # characters in one section block's text
MAX_BLOCKS = 50  # blocks in one message
FALLBACK_LIMIT = 3000  # the notification text; Slack shows it when blocks cannot be shown

Block = dict[str, Any]

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")


@dataclass(frozen=True)
class Page:
    """One Slack message: notification text plus blocks (kept as JSON so a Page is hashable
    and bot.chunks.plan_update can tell which pages of a long reply changed)."""

    text: str
    blocks_json: str

    @classmethod
    def of(cls, text: str, blocks: list[Block]) -> Page:
        return cls(text, json.dumps(blocks, ensure_ascii=False, sort_keys=True))

    @property
    def blocks(self) -> list[Block]:
        blocks: list[Block] = json.loads(self.blocks_json)
        return blocks

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def escape(text: str) -> str:
    """Slack's three control characters; after this, text cannot form mentions or links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """The little Markdown our articles use, as Slack mrkdwn: **bold** and [text](url)."""
    text = escape(markdown)
    text = _BOLD.sub(r"*\1*", text)
    return _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", text)


def link(url: str, title: str) -> str:
    safe_title = escape(title).replace("|", "¦")
    return f"<{escape(url)}|{safe_title}>" if url else safe_title


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def citations_block(citations: tuple[Citation, ...]) -> Block:
    sources = " · ".join(link(c.url, c.title) for c in citations)
    label = "Source" if len(citations) == 1 else "Sources"
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{label}: {sources}"}]}


@dataclass(frozen=True)
class Button:
    action_id: str
    label: str
    value: str = ""
    style: str = ""  # "" | "primary" | "danger"

    def element(self) -> Block:
        element: Block = {"type": "button", "action_id": self.action_id,
                          "text": {"type": "plain_text", "text": self.label[:75]}}
        if self.value:  # Slack rejects an empty value; no value reads back as ""
            element["value"] = self.value
        if self.style in ("primary", "danger"):
            element["style"] = self.style
        return element


def actions_block(buttons: Iterable[Button], block_id: str = "sb_actions") -> Block:
    return {"type": "actions", "block_id": block_id,
            "elements": [b.element() for b in buttons]}


def answer_buttons(reply: Reply) -> list[Button]:
    value = answer_button_value(reply)
    return [Button(a, button_label(a), value, "primary" if a == Action.HELPFUL else "")
            for a in buttons_for(reply)]


def paginate(body: list[Block], tail: list[Block]) -> list[list[Block]]:
    """Cut blocks into messages of at most MAX_BLOCKS; `tail` stays together on the last."""
    pages = [body[i:i + MAX_BLOCKS] for i in range(0, len(body), MAX_BLOCKS)] or [[]]
    if len(pages[-1]) + len(tail) <= MAX_BLOCKS:
        pages[-1] = pages[-1] + tail
    else:
        pages.append(list(tail))
    return pages


def render_reply(reply: Reply) -> list[Page]:
    """The messages that show `reply`: text sections, then its sources and buttons."""
    chunks = split_text(to_mrkdwn(reply.text), SECTION_LIMIT)
    body = [section(chunk) for chunk in chunks if chunk]
    tail: list[Block] = []
    if reply.citations:
        tail.append(citations_block(reply.citations))
    buttons = answer_buttons(reply)
    if buttons:
        tail.append(actions_block(buttons))
    if not body and not tail:
        body = [section(" ")]
    pages = paginate(body, tail)
    return [Page.of(_fallback(blocks), blocks) for blocks in pages]


def _fallback(blocks: list[Block]) -> str:
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    return ("\n".join(texts) or "…")[:FALLBACK_LIMIT]

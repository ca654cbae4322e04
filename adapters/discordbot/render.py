"""Reply -> Discord message payloads: content split at 2,000 characters, citations as an
embed and buttons as a persistent view, both on the last piece.

A `Piece` is hashable so bot/chunks.py can tell which messages of a long reply changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord

from adapters.discordbot.views import buttons_view
from bot.admin_views import CommandReply
from bot.models import Citation, Reply, ReplyKind
from bot.present import answer_button_value, buttons_for
from bot.render import citation_line, split_text
from bot.tickets import TicketCard

CONTENT_LIMIT = 2000  # characters in one message's content
EMBED_DESCRIPTION_LIMIT = 4096
SOURCES_COLOR = 0x3D7BE8
ERROR_COLOR = 0xD9534F

# Model text must never ping anyone: no @everyone/@here, no roles, no users, no reply ping.
NO_MENTIONS = discord.AllowedMentions.none()


@dataclass(frozen=True)
class Piece:
    """What one Discord message shows."""

    content: str
    citations: tuple[Citation, ...] = ()
    buttons: tuple[tuple[str, str, str, str], ...] = ()  # (action, value, label, style)

    def send_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for Messageable.send / PartialMessage.edit. Embeds and view are
        always given explicitly so an edit also removes what an earlier version had."""
        embed = citations_embed(self.citations)
        return {"content": self.content, "embeds": [embed] if embed else [],
                "view": buttons_view(self.buttons), "allowed_mentions": NO_MENTIONS}


def citations_embed(citations: tuple[Citation, ...]) -> discord.Embed | None:
    if not citations:
        return None
    lines = []
    for c in citations:
        lines.append(f"[{c.title}]({c.url})" if c.url else c.title)
    description = "\n".join(lines)
    if len(description) > EMBED_DESCRIPTION_LIMIT:  # absurd, but never a 400 from Discord
        description = "\n".join(citation_line(c) for c in citations)[:EMBED_DESCRIPTION_LIMIT]
    return discord.Embed(title="Sources", description=description, color=SOURCES_COLOR)


def pieces(reply: Reply) -> list[Piece]:
    """Split a reply into messages. A streaming partial carries no sources or buttons yet.

    Answer buttons carry the cited article id (bot/handoff.py: "" when none)."""
    texts = split_text(reply.text or "…", CONTENT_LIMIT)
    final = reply.kind is not ReplyKind.PARTIAL
    citations = reply.citations if final else ()
    value = answer_button_value(reply)
    buttons = tuple((a, value, "", "") for a in buttons_for(reply)) if final else ()
    out = [Piece(t) for t in texts[:-1]]
    out.append(Piece(texts[-1], citations, buttons))
    return out


def thread_name(text: str, limit: int = 80) -> str:
    """A thread title from the (already redacted) question: its first line, shortened."""
    first = " ".join(text.split())[:limit].strip()
    return first or "Support question"


def command_reply_kwargs(reply: CommandReply) -> dict[str, Any]:
    """A CommandReply as an (ephemeral) interaction follow-up: text as content, sections as
    embeds (Discord allows ten)."""
    embeds = []
    for section in reply.sections[:10]:
        embed = discord.Embed(title=section.title[:256] or None,
                              description="\n".join(section.lines)[:EMBED_DESCRIPTION_LIMIT]
                              or None, color=None if reply.ok else ERROR_COLOR)
        for name, value in section.fields[:25]:
            embed.add_field(name=name[:256] or "\u200b", value=value[:1024] or "\u200b")
        embeds.append(embed)
    content = reply.text if len(reply.text) <= CONTENT_LIMIT else \
        reply.text[: CONTENT_LIMIT - 1] + "…"
    return {"content": content, "embeds": embeds, "allowed_mentions": NO_MENTIONS}


def card_embed(card: TicketCard) -> discord.Embed:
    embed = discord.Embed(title=card.title[:256],
                          description="\n".join(card.lines)[:EMBED_DESCRIPTION_LIMIT] or None,
                          url=card.link or None, color=int(card.color.lstrip("#"), 16))
    for name, value in card.fields[:25]:
        embed.add_field(name=name[:256], value=value[:1024] or "\u200b", inline=True)
    return embed


def card_kwargs(card: TicketCard) -> dict[str, Any]:
    """The card message: embed plus Claim / Resolve / Hand back (none once closed)."""
    buttons = tuple((str(b.action), b.value, b.label, b.style) for b in card.buttons)
    return {"embeds": [card_embed(card)], "view": buttons_view(buttons)}

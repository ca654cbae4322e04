"""Block Kit for the agents' side: ticket cards and `/support` / button replies.

Limits kept: header text 150 characters, section text 3,000, at most 10 fields per section
(2,000 characters each), 50 blocks per message. Everything that came from people or the
model is escaped; the card's own labels are ours.
"""

from __future__ import annotations

from typing import Any

from adapters.slack.blocks import (
    MAX_BLOCKS,
    SECTION_LIMIT,
    Block,
    Button,
    actions_block,
    escape,
    link,
    section,
)
from bot.admin_views import CommandReply, ReplySection
from bot.render import split_text
from bot.tickets import TicketCard

HEADER_LIMIT = 150
FIELD_LIMIT = 2000
FIELDS_PER_SECTION = 10


def header(text: str) -> Block:
    return {"type": "header",
            "text": {"type": "plain_text", "text": text[:HEADER_LIMIT] or " "}}


def fields_sections(fields: tuple[tuple[str, str], ...]) -> list[Block]:
    out: list[Block] = []
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        chunk = fields[start:start + FIELDS_PER_SECTION]
        out.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{escape(label)}*\n{escape(value)}"[:FIELD_LIMIT]}
            for label, value in chunk]})
    return out


def text_sections(lines: tuple[str, ...]) -> list[Block]:
    text = "\n".join(escape(line) for line in lines if line)
    return [section(chunk) for chunk in split_text(text, SECTION_LIMIT) if chunk]


def card_blocks(card: TicketCard) -> list[Block]:
    blocks = [header(card.title), *text_sections(card.lines), *fields_sections(card.fields)]
    if card.link:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": link(card.link, "Open the conversation")}]})
    blocks = blocks[:MAX_BLOCKS - 1]
    if card.buttons:
        blocks.append(actions_block(
            (Button(str(b.action), b.label, b.value, b.style) for b in card.buttons),
            block_id=f"sb_ticket_{card.ticket_id}"))
    return blocks


def card_message(card: TicketCard) -> dict[str, Any]:
    """chat.postMessage / chat.update arguments for a ticket card."""
    return {"text": card.title[:SECTION_LIMIT], "blocks": card_blocks(card)}


def _reply_section(part: ReplySection) -> list[Block]:
    lines = (f"*{part.title}*",) if part.title else ()
    blocks = [section(chunk) for chunk in split_text(
        "\n".join([*lines, *(escape(line) for line in part.lines)]), SECTION_LIMIT) if chunk]
    return blocks + fields_sections(part.fields)


def command_response(reply: CommandReply) -> dict[str, Any]:
    """A response_url body for a `/support` command or a button press. `text` carries the
    whole message (the notification fallback); the sections, when there are any, are its
    structured form, so they replace it in the blocks rather than repeat it."""
    blocks: list[Block] = []
    for part in reply.sections:
        blocks.extend(_reply_section(part))
    if not blocks:
        blocks = [section(chunk) for chunk in split_text(escape(reply.text), SECTION_LIMIT)
                  if chunk]
    return {"text": reply.text[:SECTION_LIMIT] or " ", "blocks": blocks[:MAX_BLOCKS],
            "response_type": "ephemeral" if reply.ephemeral else "in_channel",
            "replace_original": False}

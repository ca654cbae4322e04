"""Platform-neutral replies to slash commands and button presses.

Adapters render a CommandReply: Slack as an ephemeral response (text as fallback, each
section as a section block with fields), Discord as an ephemeral interaction response (text
as content, sections as embeds). Keep to these shapes; the adapters only render them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplySection:
    title: str = ""
    lines: tuple[str, ...] = ()  # plain text lines (Markdown-light: *bold*, `code`)
    fields: tuple[tuple[str, str], ...] = ()  # label/value pairs, rendered side by side


@dataclass(frozen=True)
class CommandReply:
    """What to show the person who ran the command or pressed the button.

    ok is False for refusals and errors (adapters may colour it); ephemeral replies are seen
    only by the caller. `text` always carries the whole message, so an adapter that renders
    only text loses nothing essential.
    """

    text: str
    sections: tuple[ReplySection, ...] = ()
    ephemeral: bool = True
    ok: bool = True


def error(text: str) -> CommandReply:
    return CommandReply(text, ok=False)

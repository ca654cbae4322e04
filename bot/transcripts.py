"""Human-resolved transcripts -> chat-formatted training examples (JSONL), masked.

Each example is {"messages": [system, user, assistant, ...]}: the customer's turns become
"user", the human agent's "assistant". The bot's own earlier turns are left out (they are
what the model should improve on), consecutive turns of one side are merged, and personal
data is masked again on the way out (redact() plus the display names seen in the ticket).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from bot.redact import redact
from bot.tickets import StoredTranscript

SYSTEM_PROMPT = ("You are a customer-support agent. Answer the customer's questions clearly "
                 "and kindly, from the company's knowledge base.")
ROLES = {"customer": "user", "agent": "assistant"}


def mask(text: str, names: Iterable[str]) -> str:
    text = redact(text)
    for name in sorted({n for n in names if len(n) >= 2}, key=len, reverse=True):
        text = re.sub(rf"\b{re.escape(name)}\b", "[name]", text, flags=re.IGNORECASE)
    return text


def to_example(transcript: StoredTranscript) -> dict[str, object] | None:
    """None when there is no customer question followed by an agent answer."""
    messages: list[dict[str, str]] = []
    for turn in transcript.turns:
        role = ROLES.get(turn.role)
        if role is None or not turn.text.strip():
            continue
        text = mask(turn.text.strip(), transcript.names)
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n" + text
        else:
            messages.append({"role": role, "content": text})
    while messages and messages[0]["role"] != "user":
        messages.pop(0)
    while messages and messages[-1]["role"] != "assistant":
        messages.pop()
    if not messages:
        return None
    return {"messages": [{"role": "system", "content": SYSTEM_PROMPT}, *messages],
            "metadata": {"ticket": transcript.ticket_id, "reason": transcript.reason}}


def export_jsonl(transcripts: Iterable[StoredTranscript], out: Path) -> int:
    """Write one example per line (written to a temporary file, then renamed, so a failed
    export never leaves half a file behind). Returns how many examples were written."""
    examples = [e for e in (to_example(t) for t in transcripts) if e is not None]
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for example in examples:
            f.write(json.dumps(example, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return len(examples)

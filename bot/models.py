"""Platform-neutral event model: what arrives, where it belongs, and what goes back out.

Everything here is a frozen dataclass so an event can be handed between tasks without anyone
changing it underneath another. Adapters translate platform payloads to and from these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum


class ConversationState(StrEnum):
    BOT = "bot"  # the bot answers
    WAITING_HUMAN = "waiting_human"  # escalated; a ticket waits for an agent to claim it
    HUMAN = "human"  # an agent owns the conversation; the bot only records
    CLOSED = "closed"  # resolved; the next customer message starts a fresh bot turn


@dataclass(frozen=True)
class ConversationKey:
    """Identifies one conversation: a thread (or a DM channel) on one platform workspace."""

    platform: str
    workspace: str
    channel: str
    thread: str

    def __post_init__(self) -> None:
        for name in ("platform", "workspace", "channel", "thread"):
            value = getattr(self, name)
            if not value or ":" in value:
                raise ValueError(f"ConversationKey.{name} must be non-empty, without ':' "
                                 f"({value!r})")

    @property
    def id(self) -> str:
        """Stable string form, used inside Redis keys and ticket records."""
        return f"{self.platform}:{self.workspace}:{self.channel}:{self.thread}"

    @classmethod
    def parse(cls, text: str) -> ConversationKey:
        parts = text.split(":")
        if len(parts) != 4:
            raise ValueError(f"not a conversation key: {text!r}")
        return cls(*parts)


@dataclass(frozen=True)
class Inbound:
    """One customer message as the bot sees it, whatever platform it came from."""

    platform: str
    workspace: str
    channel: str
    thread: str  # thread root id; for a new top-level message, its own id
    user: str
    text: str
    event_id: str  # platform-unique delivery id, used to drop retries and double deliveries
    ts: float = field(default_factory=time.time)
    user_name: str = ""
    is_dm: bool = False

    @property
    def key(self) -> ConversationKey:
        return ConversationKey(self.platform, self.workspace, self.channel, self.thread)


@dataclass(frozen=True)
class Citation:
    article_id: str
    title: str
    url: str = ""


class ReplyKind(StrEnum):
    ANSWER = "answer"  # the bot answers from the knowledge base
    HANDOFF = "handoff"  # the customer is told a person will follow up
    NOTICE = "notice"  # anything else the bot says (rate limited, agent joined, ...)
    PARTIAL = "partial"  # a streaming answer still being written


@dataclass(frozen=True)
class Reply:
    text: str
    kind: ReplyKind = ReplyKind.ANSWER
    citations: tuple[Citation, ...] = ()
    reason: str = ""  # decision reason code (escalations), shown to agents
    buttons: tuple[str, ...] = ()  # action ids the adapter renders as buttons


# Roles whose `ts` is the platform's message timestamp. Their turns are stored in timestamp
# order among themselves; bot and system turns (our clock) are never moved across.
PLATFORM_ROLES = frozenset({"customer", "agent"})


@dataclass(frozen=True)
class Turn:
    """One stored line of a conversation. Text is already redacted when a Turn is built.

    Customer and agent turns carry the platform's timestamp of their message; the stores keep
    those in send order among themselves even when two messages sent together are handled in
    the other order (see PLATFORM_ROLES). Bot and system turns carry our clock's time."""

    role: str  # "customer" | "bot" | "agent" | "system"
    text: str
    ts: float
    user: str = ""
    article_id: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        return {"role": self.role, "text": self.text, "ts": self.ts, "user": self.user,
                "article_id": self.article_id, "reason": self.reason}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Turn:
        return cls(role=str(data["role"]), text=str(data["text"]), ts=float(str(data["ts"])),
                   user=str(data.get("user", "")), article_id=str(data.get("article_id", "")),
                   reason=str(data.get("reason", "")))


@dataclass(frozen=True)
class Conversation:
    """A conversation's stored state plus its recent turns."""

    key: ConversationKey
    state: ConversationState = ConversationState.BOT
    fields: dict[str, str] = field(default_factory=dict)
    turns: tuple[Turn, ...] = ()

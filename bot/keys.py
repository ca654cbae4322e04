"""Every Redis key supportbot uses, in one place (arq style). Values are JSON, never pickle.

The prefix is configurable so tests (and several bots sharing one Redis) keep apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.models import ConversationKey


@dataclass(frozen=True)
class Keys:
    prefix: str = "sb"

    def conversation(self, key: ConversationKey) -> str:
        """Hash: state, updated, ticket, agent, ..."""
        return f"{self.prefix}:conv:{key.id}"

    def turns(self, key: ConversationKey) -> str:
        """List of JSON turns, capped with LTRIM, expiring with the conversation."""
        return f"{self.prefix}:conv:{key.id}:turns"

    def dedup(self, platform: str, event_id: str) -> str:
        """String set with NX EX: the first delivery of an event wins."""
        return f"{self.prefix}:dedup:{platform}:{event_id}"

    def lock(self, key: ConversationKey) -> str:
        """Short per-conversation lock holding a random token."""
        return f"{self.prefix}:lock:conv:{key.id}"

    def rate(self, platform: str, user: str) -> str:
        """Sorted set of message timestamps: a sliding-window rate limit per user."""
        return f"{self.prefix}:rl:{platform}:{user}"

    def config(self) -> str:
        """Hash of live configuration shared by every process."""
        return f"{self.prefix}:cfg"

    def stats(self, day: str) -> str:
        """Hash of counters for one day (yyyymmdd)."""
        return f"{self.prefix}:stats:{day}"

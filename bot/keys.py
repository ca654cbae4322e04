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

    def lock_queue(self, key: ConversationKey) -> str:
        """Sorted set of lock waiters by message order (+ ':w:{token}' liveness keys)."""
        return f"{self.prefix}:lock:conv:{key.id}:q"

    def rate(self, platform: str, user: str) -> str:
        """Sorted set of message timestamps: a sliding-window rate limit per user."""
        return f"{self.prefix}:rl:{platform}:{user}"

    def config(self) -> str:
        """Hash of live configuration shared by every process."""
        return f"{self.prefix}:cfg"

    def stats(self, day: str) -> str:
        """Hash of counters for one day (yyyymmdd)."""
        return f"{self.prefix}:stats:{day}"

    # ---- human handoff (bot/tickets_redis.py) ----

    def ticket(self, ticket_id: str) -> str:
        """String: one ticket as JSON."""
        return f"{self.prefix}:ticket:{ticket_id}"

    def ticket_seq(self) -> str:
        """Counter (INCR) behind the short ticket ids agents type."""
        return f"{self.prefix}:ticket:seq"

    def tickets_active(self) -> str:
        """Sorted set of OPEN/CLAIMED ticket ids, scored by creation time."""
        return f"{self.prefix}:tickets:open"

    def transcript(self, ticket_id: str) -> str:
        """String: a kept human-resolved transcript as JSON (expires after its TTL)."""
        return f"{self.prefix}:transcript:{ticket_id}"

    def transcripts(self) -> str:
        """Sorted set of kept transcript ticket ids, scored by expiry time."""
        return f"{self.prefix}:transcripts"

    def sweeper_lease(self) -> str:
        """String holding the owner token of the one active handoff sweeper (PX lease)."""
        return f"{self.prefix}:lease:sweeper"

    # ---- feedback and analytics (bot/feedback.py, bot/analytics.py) ----

    def stats_samples(self, day: str, metric: str) -> str:
        """List of "channel value" samples (first response, time to claim) for one day."""
        return f"{self.prefix}:stats:{day}:samples:{metric}"

    def stats_conversations(self, day: str, kind: str) -> str:
        """Hash conversation id -> JSON facts ("answered" first answer, "spoiled" escalation
        or Not helpful), for resolved-by-bot figures."""
        return f"{self.prefix}:stats:{day}:conv:{kind}"

    def stats_unanswered(self, day: str) -> str:
        """List of JSON {channel, text} questions the bot handed over (redacted, capped)."""
        return f"{self.prefix}:stats:{day}:unanswered"

    def feedback_article(self, article_id: str) -> str:
        """Hash helpful / not_helpful counters of one article."""
        return f"{self.prefix}:fb:article:{article_id}"

    def feedback_conversation(self, key: ConversationKey) -> str:
        """List of JSON feedback records left in one conversation."""
        return f"{self.prefix}:fb:conv:{key.id}"

    def kb_manifest(self, index: str) -> str:
        """JSON: the knowledge-base index's encoder, dimension and article content hashes."""
        return f"{self.prefix}:kb:{index}:manifest"

    def kb_article(self, index: str, article_id: str) -> str:
        """JSON: one article's indexed texts and their vectors (base64 float32)."""
        return f"{self.prefix}:kb:{index}:article:{article_id}"

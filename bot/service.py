"""SupportBot.handle: the platform-neutral walk of one customer message.

redact -> dedup -> rate limit -> lock -> load -> (a human owns it: record only) -> answer
(streamed through the outbox) -> record -> reply, and escalate when the answerer says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum

from bot.models import ConversationState, Inbound, Reply, ReplyKind, Turn
from bot.ports import Answerer, Clock, ConversationStore, Outbox, SystemClock
from bot.redact import redact
from bot.streaming import ThrottledStream

log = logging.getLogger(__name__)

RATE_LIMITED_TEXT = ("You're sending messages faster than I can keep up with. "
                     "I've noted this one; please give me a moment before the next.")


class Outcome(StrEnum):
    ANSWERED = "answered"
    ESCALATED = "escalated"
    DUPLICATE = "duplicate"  # a retried or doubly delivered event: dropped
    RATE_LIMITED = "rate_limited"
    RECORDED = "recorded"  # a human owns the conversation: stored, no bot reply


@dataclass(frozen=True)
class BotPolicy:
    dedup_ttl_s: int = 3600
    rate_limit: int = 10  # messages per user ...
    rate_window_s: float = 60.0  # ... in this sliding window
    history_turns: int = 10
    stream_interval_s: float = 1.0


class SupportBot:
    def __init__(self, store: ConversationStore, answerer: Answerer,
                 policy: BotPolicy | None = None, clock: Clock | None = None) -> None:
        self.store = store
        self.answerer = answerer
        self.policy = policy or BotPolicy()
        self.clock = clock or SystemClock()

    async def handle(self, inbound: Inbound, outbox: Outbox) -> Outcome:
        inbound = replace(inbound, text=redact(inbound.text))
        if not await self.store.first_delivery(inbound.platform, inbound.event_id,
                                               self.policy.dedup_ttl_s):
            log.info("dropping duplicate delivery %s", inbound.event_id)
            return Outcome.DUPLICATE
        key = inbound.key
        customer_turn = Turn("customer", inbound.text, inbound.ts, user=inbound.user)
        if not await self.store.allow_message(inbound.platform, inbound.user,
                                              self.policy.rate_limit, self.policy.rate_window_s):
            # Keep what the customer said; only the bot's answer is skipped.
            await self.store.append_turn(key, customer_turn)
            await outbox.post(Reply(RATE_LIMITED_TEXT, kind=ReplyKind.NOTICE))
            return Outcome.RATE_LIMITED
        async with self.store.lock(key, order=inbound.ts):
            conv = await self.store.load(key, self.policy.history_turns)
            if conv.state in (ConversationState.HUMAN, ConversationState.WAITING_HUMAN):
                await self.store.append_turn(key, customer_turn)
                return Outcome.RECORDED
            if conv.state is ConversationState.CLOSED:
                await self.store.transition(key, [ConversationState.CLOSED], ConversationState.BOT)
            await self.store.append_turn(key, customer_turn)
            stream = ThrottledStream(outbox, self.policy.stream_interval_s)
            answer = await self.answerer.answer(inbound, conv.turns, stream.partial)
            if answer.escalate:
                moved = await self.store.transition(
                    key, [ConversationState.BOT], ConversationState.WAITING_HUMAN,
                    {"reason": answer.reason, "escalated_at": repr(self.clock.now())})
                if not moved:  # someone else changed the state meanwhile; say nothing more
                    return Outcome.RECORDED
            await stream.finish(answer.reply)
            await self.store.append_turn(key, Turn(
                "bot", answer.reply.text, self.clock.now(), article_id=answer.article_id,
                reason=answer.reason))
            return Outcome.ESCALATED if answer.escalate else Outcome.ANSWERED

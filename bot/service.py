"""SupportBot.handle: the platform-neutral walk of one customer message.

redact -> dedup -> rate limit -> lock -> load -> (a human owns it: record only; a waiting
customer may cancel) -> (channel paused: record only) -> answer (streamed through the
outbox, stopped the moment a human takes over) -> record -> reply, and escalate (ticket,
customer notice, agent card) when the answerer says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol, runtime_checkable

from bot.actions import ANSWER_BUTTONS
from bot.analytics import Analytics
from bot.handoff import Handoff, wants_to_cancel
from bot.live_config import ConfigSnapshot, LiveConfig
from bot.models import (
    Conversation,
    ConversationKey,
    ConversationState,
    Inbound,
    Reply,
    ReplyKind,
    Turn,
)
from bot.ports import Answerer, Clock, ConversationStore, Outbox, SystemClock
from bot.redact import redact
from bot.streaming import ThrottledStream

log = logging.getLogger(__name__)

RATE_LIMITED_TEXT = ("You're sending messages faster than I can keep up with. "
                     "I've noted this one; please give me a moment before the next.")
CANCELLED_TEXT = ("No problem, I've cancelled the request for a person. "
                  "I'm here if you need anything else.")
WITHDRAWN_TEXT = "(I stopped this answer: a person from our team is taking over.)"

WITH_A_HUMAN = (ConversationState.HUMAN, ConversationState.WAITING_HUMAN)


class Outcome(StrEnum):
    ANSWERED = "answered"
    ESCALATED = "escalated"
    DUPLICATE = "duplicate"  # a retried or doubly delivered event: dropped
    RATE_LIMITED = "rate_limited"
    RECORDED = "recorded"  # a human owns the conversation: stored, no bot reply
    CANCELLED = "cancelled"  # a waiting customer no longer needs a person
    SUPERSEDED = "superseded"  # a human took over while the answer was being written
    PAUSED = "paused"  # an admin paused the bot in this channel: stored, no reply


@dataclass(frozen=True)
class BotPolicy:
    dedup_ttl_s: int = 3600
    rate_limit: int = 10  # messages per user ...
    rate_window_s: float = 60.0  # ... in this sliding window
    history_turns: int = 10
    stream_interval_s: float = 1.0


@runtime_checkable
class ThresholdAware(Protocol):
    """An answerer whose confidence threshold follows the live `answer_threshold`."""

    min_coverage: float


class Superseded(Exception):
    """Raised into the answerer through its sink when the conversation left the bot: a
    human claimed it mid-answer. Answerers should let it propagate (to stop generating);
    if one swallows it, the final post is refused all the same."""


class _GuardedOutbox:
    """Refuses to post or edit once the conversation's state is not one we expect, so a bot
    answer is never written after a human took the conversation over."""

    def __init__(self, outbox: Outbox, store: ConversationStore, key: ConversationKey) -> None:
        self._outbox = outbox
        self._store = store
        self._key = key
        self.expected: tuple[ConversationState, ...] = (ConversationState.BOT,)

    async def _check(self) -> None:
        state = (await self._store.load(self._key, 0)).state
        if state not in self.expected:
            raise Superseded(f"{self._key.id} is now {state}")

    async def post(self, reply: Reply) -> str:
        await self._check()
        return await self._outbox.post(reply)

    async def edit(self, message_id: str, reply: Reply) -> None:
        await self._check()
        await self._outbox.edit(message_id, reply)


class SupportBot:
    def __init__(self, store: ConversationStore, answerer: Answerer,
                 policy: BotPolicy | None = None, clock: Clock | None = None,
                 handoff: Handoff | None = None, live: LiveConfig | None = None,
                 analytics: Analytics | None = None) -> None:
        self.store = store
        self.answerer = answerer
        self.policy = policy or BotPolicy()
        self.clock = clock or SystemClock()
        self.handoff = handoff
        self.live = live
        self.analytics = analytics

    async def handle(self, inbound: Inbound, outbox: Outbox) -> Outcome:
        inbound = replace(inbound, text=redact(inbound.text))
        if not await self.store.first_delivery(inbound.platform, inbound.event_id,
                                               self.policy.dedup_ttl_s):
            log.info("dropping duplicate delivery %s", inbound.event_id)
            return Outcome.DUPLICATE
        # Which messages reach handle() at all (support channels, DMs, mentions, known
        # threads) is decided once, by the adapters through bot/routing.MessageRouter.
        cfg = await self.live.snapshot() if self.live is not None else None
        key = inbound.key
        customer_turn = Turn("customer", inbound.text, inbound.ts, user=inbound.user)
        limit = cfg.rate_limit if cfg else self.policy.rate_limit
        window = cfg.rate_window_s if cfg else self.policy.rate_window_s
        if not await self.store.allow_message(inbound.platform, inbound.user, limit, window) \
                and (await self.store.load(key, 0)).state not in WITH_A_HUMAN:
            # Keep what the customer said; only the bot's answer is skipped. (With a human
            # there is no bot answer to protect, so nothing is limited there.)
            await self.store.append_turn(key, customer_turn)
            await outbox.post(Reply(RATE_LIMITED_TEXT, kind=ReplyKind.NOTICE))
            return Outcome.RATE_LIMITED
        async with self.store.lock(key, order=inbound.ts):
            conv = await self.store.load(key, self.policy.history_turns)
            if conv.state in WITH_A_HUMAN:
                return await self._with_human(conv, inbound, customer_turn, outbox)
            if cfg is not None and cfg.is_paused(inbound.channel):
                await self.store.append_turn(key, customer_turn)
                return Outcome.PAUSED
            new_conversation = conv.state is ConversationState.CLOSED or not conv.turns
            if new_conversation:  # analytics tell conversations in one thread apart by this
                started = {"started": repr(inbound.ts)}
                if conv.state is ConversationState.CLOSED:
                    await self.store.transition(key, [ConversationState.CLOSED],
                                                ConversationState.BOT, started)
                else:
                    await self.store.set_fields(key, started)
                conv = replace(conv, state=ConversationState.BOT, turns=(),
                               fields={**conv.fields, **started})
            await self.store.append_turn(key, customer_turn)
            if new_conversation and self.analytics is not None:
                await self.analytics.conversation_started(key, inbound.ts)
            outcome = await self._answer(replace(conv, turns=(*conv.turns, customer_turn)),
                                         inbound, outbox, cfg)
            if new_conversation and self.analytics is not None \
                    and outcome in (Outcome.ANSWERED, Outcome.ESCALATED):
                await self.analytics.first_response(key, self.clock.now() - inbound.ts,
                                                    self.clock.now())
            return outcome

    async def _with_human(self, conv: Conversation, inbound: Inbound, customer_turn: Turn,
                          outbox: Outbox) -> Outcome:
        """A person has (or is about to have) the conversation: record, and let a waiting
        customer call it off."""
        agent = conv.fields.get("agent", "")
        if agent and inbound.user == agent:
            await self.store.append_turn(conv.key, replace(customer_turn, role="agent"))
            return Outcome.RECORDED
        await self.store.append_turn(conv.key, customer_turn)
        if conv.state is ConversationState.WAITING_HUMAN and self.handoff is not None \
                and wants_to_cancel(inbound.text) and await self.handoff.cancel_by_customer(conv):
            await outbox.post(Reply(CANCELLED_TEXT, kind=ReplyKind.NOTICE))
            await self.store.append_turn(conv.key, Turn("bot", CANCELLED_TEXT, self.clock.now(),
                                                        reason="cancelled"))
            return Outcome.CANCELLED
        return Outcome.RECORDED

    async def _answer(self, conv: Conversation, inbound: Inbound, outbox: Outbox,
                      cfg: ConfigSnapshot | None) -> Outcome:
        key = conv.key
        if cfg is not None and isinstance(self.answerer, ThresholdAware):
            self.answerer.min_coverage = cfg.answer_threshold
        guarded = _GuardedOutbox(outbox, self.store, key)
        stream = ThrottledStream(guarded, self.policy.stream_interval_s)
        try:
            answer = await self.answerer.answer(inbound, conv.turns[:-1], stream.partial)
            reply = answer.reply
            if answer.escalate:
                moved = await self.store.transition(
                    key, [ConversationState.BOT], ConversationState.WAITING_HUMAN,
                    {"reason": answer.reason, "escalated_at": repr(self.clock.now())})
                if not moved:  # someone else changed the state meanwhile; say nothing more
                    raise Superseded(f"{key.id} left the bot before the escalation")
                guarded.expected = (ConversationState.WAITING_HUMAN,)
                ticket = None
                if self.handoff is not None:
                    ticket = await self.handoff.open_ticket(
                        conv, inbound.user, inbound.user_name, answer.reason, inbound.text)
                    eta = await self.handoff.waiting_text()
                    reply = replace(reply, text=f"{reply.text} {eta}")
                elif self.analytics is not None:
                    await self.analytics.escalated(key, answer.reason, self.clock.now(),
                                                   inbound.text, conv.fields.get("started", ""))
                try:
                    await stream.finish(reply)
                finally:  # the card goes out even if an agent was faster than our notice
                    if ticket is not None and self.handoff is not None:
                        await self.handoff.post_card(ticket)
            else:
                if reply.kind is ReplyKind.ANSWER and not reply.buttons:
                    reply = replace(reply, buttons=tuple(str(b) for b in ANSWER_BUTTONS))
                await stream.finish(reply)
                if self.analytics is not None:
                    await self.analytics.answered(key, self.clock.now(),
                                                  conv.fields.get("started", ""))
        except Superseded as why:
            log.info("answer in %s stopped: %s", key.id, why)
            if stream.message_id is not None:  # replace the half-written answer
                await outbox.edit(stream.message_id, Reply(WITHDRAWN_TEXT, ReplyKind.NOTICE))
            return Outcome.SUPERSEDED
        await self.store.append_turn(key, Turn(
            "bot", reply.text, self.clock.now(), article_id=answer.article_id,
            reason=answer.reason))
        return Outcome.ESCALATED if answer.escalate else Outcome.ANSWERED


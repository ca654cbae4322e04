"""Human handoff inside the chat platform: tickets, claim, mute, hand back, resolve, timeouts.

Interfaces for the Slack and Discord adapters (they render and route; the meaning lives here)
------------------------------------------------------------------------------------------

Implement (one per platform):

* ``AgentDesk`` (below): ``post_card(channel, card) -> card message id``,
  ``update_card(card_id, card)``, ``notify_agents(channel, text, card_id)`` (reminders; Slack:
  reply in the card's thread, Discord: a message referencing the card),
  ``customer_outbox(key) -> Outbox`` bound to the customer's thread/DM, and
  ``link(key) -> permalink`` of the customer's conversation. ``channel`` is the agents'
  channel of the conversation's platform, decided here from live config
  (``agent_channel.<platform>``, else ``agent_channel``; see
  ``ConfigSnapshot.agent_channel_for``); "" means none is configured and the desk raises.
* Render ``bot.tickets.TicketCard`` (title, lines, fields, buttons with ``Action`` ids from
  bot/actions.py and the ticket id as value, link, colour). Buttons disappear when a ticket
  closes: always re-render the whole card from ``update_card``.
* Render ``bot.admin_views.CommandReply`` (text + sections, ephemeral) for commands/buttons.

Call:

* every customer message, agent messages in customer threads included:
  ``SupportBot.handle(inbound, outbox)`` (bot/service.py). While a human owns the
  conversation the bot records the message (as role "agent" when it comes from the agent who
  claimed it) and says nothing.
* ``/support <text>``: ``AdminCommands.handle(caller, text) -> CommandReply`` (bot/admin.py).
  Ack first (Slack < 3 s, Discord: defer), then send the reply.
* every button press: ``Interactions.handle(caller, action, value, conversation=key,
  outbox=outbox, comment="") -> CommandReply`` (bot/interactions.py). ``conversation`` and
  ``outbox`` are the customer conversation the pressed message lives in (needed for the
  customer buttons Helpful / Not helpful / Talk to a person; their value is the cited
  article id, "" when none). Ticket buttons (Claim / Resolve / Hand back) carry the ticket id.
* ``Caller`` (bot/authz.py): platform, user id, display name, workspace, and the facts the
  bot decides on: ``groups`` (Slack user-group ids or Discord role ids) and ``permissions``
  (Discord permission names such as "administrator", "manage_guild"). The bot decides.
* Start one ``Sweeper`` (bot/sweeper.py) per process; the Redis lease makes exactly one of
  them act at a time (reminders to agents, updates to customers, cards that failed to post).

Flow: escalation (the answerer says so, or "Talk to a person") -> ticket OPEN, conversation
WAITING_HUMAN, customer told a person will answer and roughly when (or when the team is back,
outside business hours), card posted. Claim -> CLAIMED / HUMAN, "<agent> has joined" in the
customer's thread, bot silent. Hand back -> HANDED_BACK / BOT. Resolve -> RESOLVED / CLOSED
with a note; the next customer message starts a fresh bot turn. A waiting customer can
cancel ("never mind") -> CANCELLED / BOT. Ticket moves are atomic compare-and-set in the
TicketStore: of two agents claiming at once exactly one wins, the other is told who has it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.analytics import Analytics
from bot.business_hours import BusinessHours
from bot.live_config import ConfigSnapshot, LiveConfig
from bot.models import (
    Conversation,
    ConversationKey,
    ConversationState,
    Reply,
    ReplyKind,
    Turn,
)
from bot.ports import LLM, Clock, ConversationStore, LockTimeout, Outbox, SystemClock
from bot.summary import summarize
from bot.tickets import (
    StoredTranscript,
    Ticket,
    TicketCard,
    TicketState,
    TicketStore,
    normalize_ticket_id,
    ticket_card,
)

log = logging.getLogger(__name__)


class AgentDesk(Protocol):
    """The agents' side of one platform, implemented by its adapter."""

    async def post_card(self, channel: str, card: TicketCard) -> str:
        """Post a ticket card to the agents' `channel`; returns its id."""
        ...

    async def update_card(self, card_id: str, card: TicketCard) -> None:
        """Replace a posted card with its new state (claimed by X, resolved, ...)."""
        ...

    async def notify_agents(self, channel: str, text: str, card_id: str = "") -> None:
        """A message for agents about a ticket (reminders), attached to its card if given."""
        ...

    def customer_outbox(self, key: ConversationKey) -> Outbox:
        """An Outbox bound to the customer's conversation (thread or DM)."""
        ...

    async def link(self, key: ConversationKey) -> str:
        """A link agents can click to open the customer's conversation ("" if none)."""
        ...


@dataclass(frozen=True)
class ActionResult:
    """Outcome of an agent action, phrased for the agent."""

    ok: bool
    message: str
    ticket: Ticket | None = None


CANCEL_PHRASES = re.compile(
    r"^\s*(never\s*mind|nevermind|nvm|cancel( that| it| the request)?|forget it|no need|"
    r"it'?s fine now|all good now|i('| a)?m good|solved it|i solved it)\b[\s.!]*",
    re.IGNORECASE)


def wants_to_cancel(text: str) -> bool:
    """A waiting customer saying they no longer need a person."""
    return bool(CANCEL_PHRASES.match(text)) and len(text) <= 80


def _minutes(seconds: float) -> str:
    m = max(1, round(seconds / 60))
    return f"{m} minute{'s' if m != 1 else ''}"


class Handoff:
    """Platform-neutral handoff operations shared by SupportBot, commands and buttons."""

    def __init__(self, tickets: TicketStore, store: ConversationStore,
                 desks: Mapping[str, AgentDesk], live: LiveConfig, llm: LLM | None = None,
                 clock: Clock | None = None, analytics: Analytics | None = None,
                 transcript_ttl_s: int = 90 * 24 * 3600) -> None:
        self.tickets = tickets
        self.store = store
        self.desks = desks  # platform -> desk
        self.live = live
        self.llm = llm
        self.clock = clock or SystemClock()
        self.analytics = analytics
        self.transcript_ttl_s = transcript_ttl_s

    def _desk(self, key: ConversationKey) -> AgentDesk | None:
        return self.desks.get(key.platform) or self.desks.get("*")

    # ---- escalation -------------------------------------------------------------------------

    async def waiting_text(self, cfg: ConfigSnapshot | None = None) -> str:
        """'A person will answer in about N minutes' or when the team is back."""
        cfg = cfg or await self.live.snapshot()
        hours = BusinessHours.parse(cfg.business_hours)
        now = self.clock.now()
        if not hours.is_open(now):
            return f"Our team is away right now; someone will answer {hours.describe_next(now)}."
        return f"Our team usually answers within {_minutes(cfg.claim_timeout_s)}."

    async def open_ticket(self, conv: Conversation, customer: str, customer_name: str,
                          reason: str, question: str = "") -> Ticket:
        """Create the ticket for a conversation already moved to WAITING_HUMAN."""
        turns = conv.turns
        summary = await summarize(turns, self.llm)
        desk = self._desk(conv.key)
        link = ""
        if desk is not None:
            try:
                link = await desk.link(conv.key)
            except Exception:  # a link is nice to have; never lose the ticket over it
                log.exception("could not build a link for %s", conv.key.id)
        ticket = Ticket(id=await self.tickets.next_id(), conversation=conv.key,
                        customer=customer, customer_name=customer_name, reason=reason,
                        created=self.clock.now(), link=link, summary=tuple(summary),
                        transcript=turns)
        await self.tickets.create(ticket)
        await self.store.set_fields(conv.key, {"ticket": ticket.id})
        if self.analytics is not None:
            await self.analytics.escalated(conv.key, reason, self.clock.now(), question,
                                           conv.fields.get("started", ""))
        return ticket

    async def post_card(self, ticket: Ticket) -> None:
        """Post the card; on failure the sweeper retries (the ticket has no card_id yet)."""
        desk = self._desk(ticket.conversation)
        if desk is None:
            log.warning("no agent desk for platform %s; ticket %s has no card",
                        ticket.conversation.platform, ticket.id)
            return
        cfg = await self.live.snapshot()
        try:
            card_id = await desk.post_card(cfg.agent_channel_for(ticket.conversation.platform),
                                           ticket_card(ticket))
        except Exception:
            log.exception("posting the card of ticket %s failed; the sweeper retries", ticket.id)
            return
        await self.tickets.set_card(ticket.id, card_id)

    async def escalate(self, key: ConversationKey, customer: str, customer_name: str,
                       reason: str, outbox: Outbox, text: str = "") -> Ticket | None:
        """Hand a BOT conversation to a person outside the message pipeline ("Talk to a
        person" button). None when it is already with (or waiting for) a person."""
        if not await self.store.transition(key, [ConversationState.BOT, ConversationState.CLOSED],
                                           ConversationState.WAITING_HUMAN,
                                           {"reason": reason,
                                            "escalated_at": repr(self.clock.now())}):
            return None
        conv = await self.store.load(key, 20)
        question = next((t.text for t in reversed(conv.turns) if t.role == "customer"), "")
        ticket = await self.open_ticket(conv, customer, customer_name, reason, question)
        notice = " ".join(p for p in (text, await self.waiting_text()) if p)
        await outbox.post(Reply(notice, kind=ReplyKind.HANDOFF, reason=reason))
        await self.store.append_turn(key, Turn("bot", notice, self.clock.now(), reason=reason))
        await self.post_card(ticket)
        return ticket

    # ---- agent actions ----------------------------------------------------------------------

    async def _refresh_card(self, ticket: Ticket) -> None:
        desk = self._desk(ticket.conversation)
        if desk is None or not ticket.card_id:
            return
        try:
            await desk.update_card(ticket.card_id, ticket_card(ticket))
        except Exception:  # the ticket state is what counts; a stale card is cosmetic
            log.exception("updating the card of ticket %s failed", ticket.id)

    async def _tell_customer(self, key: ConversationKey, text: str) -> None:
        desk = self._desk(key)
        await self.store.append_turn(key, Turn("system", text, self.clock.now()))
        if desk is None:
            log.warning("no desk for %s: customer notice not sent: %s", key.platform, text)
            return
        await desk.customer_outbox(key).post(Reply(text, kind=ReplyKind.NOTICE))

    async def claim(self, ticket_id: str, agent: str, agent_name: str) -> ActionResult:
        ticket_id = normalize_ticket_id(ticket_id)
        result = await self.tickets.claim(ticket_id, agent, agent_name, self.clock.now())
        ticket = result.ticket
        if ticket is None:
            return ActionResult(False, f"No ticket {ticket_id}.")
        if not result.won:
            if ticket.state is TicketState.CLAIMED:
                return ActionResult(False, f"Ticket {ticket.id} is already claimed by "
                                           f"{ticket.agent_name or ticket.agent}.", ticket)
            return ActionResult(False, f"Ticket {ticket.id} is already "
                                       f"{ticket.state.replace('_', ' ')}.", ticket)
        await self._agent_joins(ticket)
        await self._refresh_card(ticket)
        return ActionResult(True, f"You have ticket {ticket.id}. Reply in the customer's "
                                  f"thread: {ticket.link or ticket.conversation.id}", ticket)

    async def _agent_joins(self, ticket: Ticket) -> bool:
        """Second step of a claim: the conversation goes to HUMAN and the customer is told.
        A compare-and-set, so when the sweeper repairs a claim that stopped between its two
        steps (a crash), exactly one of them tells the customer."""
        agent, name = ticket.agent, ticket.agent_name
        moved = await self.store.transition(
            ticket.conversation, [ConversationState.WAITING_HUMAN], ConversationState.HUMAN,
            {"ticket": ticket.id, "agent": agent, "agent_name": name})
        if moved:
            await self._tell_customer(ticket.conversation,
                                      f"{name or agent} has joined the conversation.")
            if self.analytics is not None:
                await self.analytics.claimed(ticket.conversation, ticket.created,
                                             self.clock.now())
        return moved

    async def _close(self, ticket_id: str, to: TicketState, by: str, note: str,
                     conv_to: ConversationState, customer_text: str) -> ActionResult:
        ticket_id = normalize_ticket_id(ticket_id)
        existing = await self.tickets.get(ticket_id)
        if existing is None:
            return ActionResult(False, f"No ticket {ticket_id}.")
        key = existing.conversation
        try:
            # The conversation lock orders this notice after any sweeper update to the same
            # customer, and after any record-only handling of their latest message.
            async with self.store.lock(key, ttl_s=30, wait_s=10):
                ticket = await self.tickets.close(ticket_id, to, self.clock.now(), by=by,
                                                  note=note)
                if ticket is None:
                    state = existing.state.replace("_", " ")
                    return ActionResult(False, f"Ticket {ticket_id} is already {state}.",
                                        existing)
                await self.store.transition(
                    key, [ConversationState.WAITING_HUMAN, ConversationState.HUMAN], conv_to,
                    {"ticket": "", "agent": "", "agent_name": "", "reason": ""})
                await self._tell_customer(key, customer_text)
        except LockTimeout:
            return ActionResult(False, f"Ticket {ticket_id} is busy; try again in a moment.",
                                existing)
        await self._refresh_card(ticket)
        if to is TicketState.RESOLVED:
            await self._keep_transcript(ticket)
        return ActionResult(True, f"Ticket {ticket.id} {to.replace('_', ' ')}.", ticket)

    async def resolve(self, ticket_id: str, by: str, note: str = "") -> ActionResult:
        text = "This request has been marked as resolved"
        text += f": {note.rstrip('.')}." if note else "."
        text += " If you need anything else, just write here and I'll help."
        result = await self._close(ticket_id, TicketState.RESOLVED, by, note,
                                   ConversationState.CLOSED, text)
        if result.ok and result.ticket is not None and self.analytics is not None:
            await self.analytics.human_resolved(result.ticket.conversation, self.clock.now())
        return result

    async def hand_back(self, ticket_id: str, by: str) -> ActionResult:
        return await self._close(ticket_id, TicketState.HANDED_BACK, by, "",
                                 ConversationState.BOT,
                                 "I'm back to help here. Ask me anything, or press "
                                 "'Talk to a person' if you need our team again.")

    async def cancel_by_customer(self, conv: Conversation) -> bool:
        """A waiting customer no longer needs a person. Called under the conversation lock by
        SupportBot; False when an agent claimed it meanwhile (their message stays recorded)."""
        ticket_id = conv.fields.get("ticket", "")
        if not ticket_id:
            return False
        ticket = await self.tickets.close(ticket_id, TicketState.CANCELLED, self.clock.now(),
                                          by="customer", allowed_from=[TicketState.OPEN])
        if ticket is None:
            return False
        await self.store.transition(conv.key, [ConversationState.WAITING_HUMAN],
                                    ConversationState.BOT,
                                    {"ticket": "", "agent": "", "agent_name": "", "reason": ""})
        await self._refresh_card(ticket)
        return True

    # ---- transcripts ------------------------------------------------------------------------

    async def _keep_transcript(self, ticket: Ticket) -> None:
        """Keep the conversation since the escalation if a human actually answered in it."""
        conv = await self.store.load(ticket.conversation, 200)
        turns = tuple(t for t in conv.turns if t.ts >= ticket.transcript[0].ts) \
            if ticket.transcript else conv.turns
        if not any(t.role == "agent" for t in turns):
            return
        names = tuple(n for n in (ticket.customer_name, ticket.agent_name) if n)
        await self.tickets.keep_transcript(
            StoredTranscript(ticket.id, ticket.reason, self.clock.now(), turns, names),
            self.transcript_ttl_s)

    # ---- timeouts (called by the one Sweeper holding the lease) ------------------------------

    async def sweep(self) -> int:
        """Remind agents about tickets left unclaimed, update their customers, post cards that
        failed to post, and finish claims interrupted between their two steps. Returns how
        many reminders were sent."""
        cfg = await self.live.snapshot()
        now = self.clock.now()
        sent = 0
        for ticket in await self.tickets.active():
            if not ticket.card_id:
                await self.post_card(ticket)
            if ticket.state is TicketState.CLAIMED:
                await self._finish_interrupted_claim(ticket)
                continue
            if ticket.state is not TicketState.OPEN or ticket.reminders >= cfg.max_reminders:
                continue
            if now - ticket.created < cfg.claim_timeout_s * (ticket.reminders + 1):
                continue
            if await self._remind(ticket, cfg):
                sent += 1
        return sent

    async def _finish_interrupted_claim(self, ticket: Ticket) -> None:
        """A claimed ticket whose conversation still waits for a human: the claiming process
        stopped between the ticket's claim and the conversation's move. Finish it."""
        conversation = await self.store.load(ticket.conversation, max_turns=0)
        if conversation.state is ConversationState.WAITING_HUMAN and await self._agent_joins(
                ticket):
            log.warning("ticket %s: finished a claim by %s that was interrupted", ticket.id,
                        ticket.agent)
            await self._refresh_card(ticket)

    async def _remind(self, ticket: Ticket, cfg: ConfigSnapshot) -> bool:
        key = ticket.conversation
        try:
            async with self.store.lock(key, ttl_s=30, wait_s=1):
                if not await self.tickets.mark_reminded(ticket.id, ticket.reminders):
                    return False  # claimed, closed or reminded by someone else meanwhile
                waited = _minutes(self.clock.now() - ticket.created)
                desk = self._desk(key)
                if desk is not None:
                    try:
                        await desk.notify_agents(
                            cfg.agent_channel_for(key.platform),
                            f"Reminder: ticket {ticket.id} has waited "
                            f"{waited} without an agent.", ticket.card_id)
                    except Exception:
                        log.exception("reminder for ticket %s failed", ticket.id)
                await self._tell_customer(key, "Thanks for your patience, you're still in the "
                                               "queue. " + await self.waiting_text(cfg))
                return True
        except LockTimeout:
            return False  # the conversation is busy; the next sweep tries again

    async def find(self, ticket_id: str) -> Ticket | None:
        return await self.tickets.get(normalize_ticket_id(ticket_id))

    async def active(self, agent: str = "") -> Sequence[Ticket]:
        tickets = await self.tickets.active()
        return [t for t in tickets if t.agent == agent] if agent else tickets

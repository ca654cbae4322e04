"""Button presses from any platform: the adapter routes (caller, action id, value) here.

Ticket buttons (Claim / Resolve / Hand back) need an agent; answer buttons (Helpful /
Not helpful / Talk to a person) may be pressed by the customer who asked in that
conversation, or by an agent. Authorization is decided before any button body runs.
"""

from __future__ import annotations

from bot.actions import Action
from bot.admin_views import CommandReply, error
from bot.authz import Authorizer, Caller, Role
from bot.feedback import Feedback
from bot.handoff import ActionResult, Handoff
from bot.models import ConversationKey
from bot.ports import Clock, ConversationStore, Outbox, SystemClock

TICKET_ACTIONS = {Action.CLAIM, Action.RESOLVE, Action.HANDBACK}


def result_reply(result: ActionResult) -> CommandReply:
    return CommandReply(result.message, ok=result.ok)


class Interactions:
    def __init__(self, authorizer: Authorizer, handoff: Handoff, feedback: Feedback,
                 store: ConversationStore, clock: Clock | None = None) -> None:
        self.authorizer = authorizer
        self.handoff = handoff
        self.feedback = feedback
        self.store = store
        self.clock = clock or SystemClock()


    async def handle(self, caller: Caller, action: str, value: str,
                     conversation: ConversationKey | None = None, outbox: Outbox | None = None,
                     comment: str = "") -> CommandReply:
        """Route one button press; always answers (ephemeral), never raises on bad input."""
        try:
            act = Action(action)
        except ValueError:
            return error(f"Unknown button {action!r}.")
        if act in TICKET_ACTIONS:
            decision = self.authorizer.check(caller, Role.AGENT)
            if not decision.allowed:
                return error(decision.message)
            if not value.strip():
                return error("This button carries no ticket id.")
            if act is Action.CLAIM:
                return result_reply(await self.handoff.claim(value, caller.user_id,
                                                             caller.name))
            if act is Action.RESOLVE:
                return result_reply(await self.handoff.resolve(value, caller.name, comment))
            return result_reply(await self.handoff.hand_back(value, caller.name))
        if conversation is None:
            return error("This button belongs to a conversation the bot cannot find.")
        conv = await self.store.load(conversation, 200)
        agent = self.authorizer.check(caller, Role.AGENT).allowed
        if not agent and not any(t.role == "customer" and t.user == caller.user_id
                                 for t in conv.turns):
            return error("Only the person who asked can use these buttons.")
        if act is Action.TALK_TO_HUMAN:
            if outbox is None:
                return error("Cannot reach this conversation to hand it over.")
            ticket = await self.handoff.escalate(conversation, caller.user_id, caller.name,
                                                 "asked_for_human", outbox,
                                                 "Sure, I'm getting a person for you.")
            if ticket is None:
                return CommandReply("A person is already on this conversation.")
            return CommandReply(f"Done: ticket {ticket.id} is waiting for our team.")
        helpful = act is Action.HELPFUL
        await self.feedback.record(conversation, value.strip(), caller.user_id, helpful,
                                   self.clock.now(), comment, conv.fields.get("started", ""))
        if helpful:
            return CommandReply("Thanks for the feedback!")
        return CommandReply("Thanks for telling us. If you still need help, press "
                            "'Talk to a person'.")

"""Handoff through Slack, end to end: ticket card, Claim / Resolve / Hand back buttons,
`/support` commands, with the authorization in front of all of them."""

from __future__ import annotations

from typing import Any

from adapters.slack.app import SlackAdapter
from bot.models import ConversationKey, ConversationState
from bot.tickets import TicketState
from tests.slack.conftest import ADMIN, AGENT, AGENT_CHANNEL, CUSTOMER, SUPPORT_CHANNEL, Stack
from tests.slack.fake_slack import (
    TEAM_ID,
    FakeSlack,
    Message,
    block_actions,
    message_event,
    slash_command,
)
from tests.slack.test_slack_e2e import action_ids, deliver, texts


async def interact(fake: FakeSlack, slack: SlackAdapter, kind: str,
                   payload: dict[str, Any]) -> dict[str, Any]:
    """Send an interactive / slash_commands envelope; returns the response_url body."""
    before = len(fake.responses)
    envelope = await fake.send_envelope(kind, payload)
    await fake.wait_ack(envelope)
    await slack.idle()
    assert len(fake.responses) == before + 1, "no ephemeral answer"
    return fake.responses[-1]


async def escalate(fake: FakeSlack, slack: SlackAdapter) -> tuple[dict[str, Any], Message]:
    """A question the knowledge base cannot answer; returns it and the ticket card."""
    question = message_event(SUPPORT_CHANNEL, "my invoice numbers jumped from 17 to 94",
                             user=CUSTOMER)
    await deliver(fake, slack, question)
    [card] = fake.in_channel(AGENT_CHANNEL)
    return question, card


def key_of(question: dict[str, Any]) -> ConversationKey:
    return ConversationKey("slack", TEAM_ID, SUPPORT_CHANNEL, question["ts"])


async def test_claim_button_silences_the_bot_in_that_thread(
        fake_slack: FakeSlack, slack: SlackAdapter, stack: Stack) -> None:
    question, card = await escalate(fake_slack, slack)
    assert action_ids(card.blocks) == ["sb_claim", "sb_resolve", "sb_handback"]
    assert "Casey Customer" in texts(card.blocks)  # the name users.info gave
    [notice] = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
    assert "person" in texts(notice.blocks)

    response = await interact(fake_slack, slack, "interactive",
                              block_actions(fake_slack, card, "sb_claim", AGENT))
    assert response["response_type"] == "ephemeral" and "You have ticket" in response["text"]
    assert action_ids(card.blocks) == ["sb_resolve", "sb_handback"]  # the card was updated
    assert "claimed by Alex Agent" in texts(card.blocks)
    joined = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])[-1]
    assert "Alex Agent has joined" in texts(joined.blocks)

    # The bot stays silent in the thread: a question it could answer gets no reply, and the
    # agent's own reply there is recorded as the agent's.
    posted = len(fake_slack.calls_to("chat.postMessage"))
    await deliver(fake_slack, slack, message_event(
        SUPPORT_CHANNEL, "How do I reset my password?", user=CUSTOMER,
        thread_ts=question["ts"]))
    await deliver(fake_slack, slack, message_event(
        SUPPORT_CHANNEL, "Looking into your invoice numbers now.", user=AGENT,
        thread_ts=question["ts"]))
    assert len(fake_slack.calls_to("chat.postMessage")) == posted
    conv = await stack.bot.store.load(key_of(question))
    assert conv.state is ConversationState.HUMAN
    assert [t.role for t in conv.turns[-2:]] == ["customer", "agent"]


async def test_buttons_refuse_people_who_are_not_agents(
        fake_slack: FakeSlack, slack: SlackAdapter, stack: Stack) -> None:
    question, card = await escalate(fake_slack, slack)
    response = await interact(fake_slack, slack, "interactive",
                              block_actions(fake_slack, card, "sb_claim", CUSTOMER))
    assert response["response_type"] == "ephemeral"
    assert "only a support agent" in response["text"]
    [ticket] = await stack.tickets.active()
    assert ticket.state is TicketState.OPEN
    assert (await stack.bot.store.load(key_of(question))).state \
        is ConversationState.WAITING_HUMAN


async def test_hand_back_then_bot_answers_again(fake_slack: FakeSlack, slack: SlackAdapter,
                                                stack: Stack) -> None:
    question, card = await escalate(fake_slack, slack)
    await interact(fake_slack, slack, "interactive",
                   block_actions(fake_slack, card, "sb_claim", AGENT))
    await interact(fake_slack, slack, "interactive",
                   block_actions(fake_slack, card, "sb_handback", AGENT))
    assert action_ids(card.blocks) == []  # a closed ticket's card has no buttons
    await deliver(fake_slack, slack, message_event(
        SUPPORT_CHANNEL, "How do I reset my password?", user=CUSTOMER,
        thread_ts=question["ts"]))
    last = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])[-1]
    assert "Reset password" in texts(last.blocks)


async def test_talk_to_a_person_button_opens_a_ticket(fake_slack: FakeSlack,
                                                      slack: SlackAdapter) -> None:
    question = message_event(SUPPORT_CHANNEL, "How do I reset my password?", user=CUSTOMER)
    await deliver(fake_slack, slack, question)
    [answer] = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
    response = await interact(fake_slack, slack, "interactive",
                              block_actions(fake_slack, answer, "sb_talk_to_human", CUSTOMER))
    assert "ticket" in response["text"]
    [card] = fake_slack.in_channel(AGENT_CHANNEL)
    assert action_ids(card.blocks)[0] == "sb_claim"
    assert "person" in texts(fake_slack.thread(SUPPORT_CHANNEL, question["ts"])[-1].blocks)


async def test_support_command_is_ephemeral_and_authorized(fake_slack: FakeSlack,
                                                           slack: SlackAdapter,
                                                           stack: Stack) -> None:
    await escalate(fake_slack, slack)
    listing = await interact(fake_slack, slack, "slash_commands",
                             slash_command(fake_slack, "tickets", AGENT))
    assert listing["response_type"] == "ephemeral"
    [ticket] = await stack.tickets.active()
    assert ticket.id in json_text(listing)
    refused = await interact(fake_slack, slack, "slash_commands",
                             slash_command(fake_slack, "pause", AGENT, SUPPORT_CHANNEL))
    assert "only an admin" in refused["text"]
    assert not (await stack.live.fresh()).paused_channels  # the body never ran
    paused = await interact(fake_slack, slack, "slash_commands",
                            slash_command(fake_slack, "pause", ADMIN, SUPPORT_CHANNEL))
    assert "Paused" in paused["text"]
    assert SUPPORT_CHANNEL in (await stack.live.fresh()).paused_channels


def json_text(body: dict[str, Any]) -> str:
    return str(body["text"]) + " " + " ".join(str(b) for b in body.get("blocks", []))


async def test_feedback_buttons_only_for_the_asker(fake_slack: FakeSlack,
                                                   slack: SlackAdapter) -> None:
    question = message_event(SUPPORT_CHANNEL, "How do I reset my password?", user=CUSTOMER)
    await deliver(fake_slack, slack, question)
    [answer] = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
    thanks = await interact(fake_slack, slack, "interactive",
                            block_actions(fake_slack, answer, "sb_helpful", CUSTOMER))
    assert thanks["text"] == "Thanks for the feedback!"
    stranger = await interact(fake_slack, slack, "interactive",
                              block_actions(fake_slack, answer, "sb_not_helpful", "U0OTHER"))
    assert "Only the person who asked" in stranger["text"]

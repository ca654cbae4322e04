"""Feedback and customer buttons: stored by article and conversation, through Interactions."""

from __future__ import annotations

from bot.actions import Action
from bot.keys import Keys
from bot.models import ConversationState
from tests.conftest import RecordingOutbox
from tests.handoff_fakes import make_stack, msg
from tests.test_admin import AGENT, CUSTOMER, buttons_for

KEY = msg("", "x").key


async def test_answer_buttons_and_feedback_by_article_and_conversation(
        redis_keys: Keys) -> None:
    stack = make_stack("memory", redis_keys)
    outbox = RecordingOutbox()
    await stack.bot.handle(msg("How do I reset my password?", "e1"), outbox)
    assert outbox.final()[-1].buttons == tuple(str(a) for a in
                                               (Action.HELPFUL, Action.NOT_HELPFUL,
                                                Action.TALK_TO_HUMAN))
    buttons = buttons_for(stack)
    assert (await buttons.handle(CUSTOMER, Action.HELPFUL, "reset-password", KEY)).ok
    reply = await buttons.handle(CUSTOMER, Action.NOT_HELPFUL, "reset-password", KEY,
                                 comment="link expired, mail me at ann@example.com")
    assert reply.ok and "Talk to a person" in reply.text
    counts = await buttons.feedback.for_article("reset-password")
    assert (counts.helpful, counts.not_helpful) == (1, 1)
    records = await buttons.feedback.for_conversation(KEY)
    assert [r["helpful"] for r in records] == [True, False]
    assert records[1]["comment"] == "link expired, mail me at [email]"
    assert (await buttons.handle(AGENT, Action.HELPFUL, "", KEY)).ok  # agents may vote too
    assert (await buttons.handle(CUSTOMER, "sb_bogus", "x", KEY)).text == \
        "Unknown button 'sb_bogus'."


async def test_talk_to_a_person_button_opens_a_ticket_once(redis_keys: Keys) -> None:
    stack = make_stack("memory", redis_keys)
    await stack.bot.handle(msg("How do I reset my password?", "e1"), RecordingOutbox())
    buttons = buttons_for(stack)
    outbox = RecordingOutbox()
    first = await buttons.handle(CUSTOMER, Action.TALK_TO_HUMAN, "", KEY, outbox)
    assert first.ok and first.text.startswith("Done: ticket T1")
    assert "getting a person" in outbox.final()[-1].text
    assert (await stack.store.load(KEY)).state is ConversationState.WAITING_HUMAN
    [(_, _, card)] = stack.desk.card_log
    assert ("Reason", "customer asked for a person (asked_for_human)") in card.fields
    again = await buttons.handle(CUSTOMER, Action.TALK_TO_HUMAN, "", KEY, outbox)
    assert again.text == "A person is already on this conversation."
    assert len(stack.desk.card_log) == 1

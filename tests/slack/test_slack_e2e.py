"""End-to-end: the real slack-bolt app over Socket Mode against the fake Slack, the real bot
pipeline (knowledge-base answerer) on real Redis."""

from __future__ import annotations

from typing import Any

from adapters.slack.app import SlackAdapter
from bot.models import ConversationState
from tests.slack.conftest import SUPPORT_CHANNEL
from tests.slack.fake_slack import (
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    FakeSlack,
    mention_event,
    message_event,
)


async def deliver(fake: FakeSlack, slack: SlackAdapter, event: dict[str, Any],
                  retry_attempt: int | None = None, event_id: str | None = None) -> float:
    """Send one event, wait for its ack and for the work it scheduled; returns ack latency."""
    envelope = await fake.send_event(event, retry_attempt, event_id)
    ack = await fake.wait_ack(envelope)
    await slack.idle()
    return ack.at - fake.sent_at[envelope]


def texts(blocks: list[dict[str, Any]], kind: str = "section") -> str:
    out = []
    for b in blocks:
        if b["type"] == kind == "section":
            if "text" in b:
                out.append(b["text"]["text"])
            out.extend(f["text"] for f in b.get("fields", []))
        elif b["type"] == kind == "header":
            out.append(b["text"]["text"])
        elif b["type"] == kind == "context":
            out.extend(e["text"] for e in b["elements"])
    return "\n".join(out)


def action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


async def test_channel_question_gets_threaded_cited_answer(fake_slack: FakeSlack,
                                                           slack: SlackAdapter) -> None:
    question = message_event(SUPPORT_CHANNEL, "How do I reset my password?")
    await deliver(fake_slack, slack, question)
    [reply] = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
    assert "*Settings → Security*" in texts(reply.blocks)  # **bold** became Slack mrkdwn
    sources = texts(reply.blocks, "context")
    assert "<https://help.tallyhub.example/reset-password|Reset your password>" in sources
    assert action_ids(reply.blocks) == ["sb_helpful", "sb_not_helpful", "sb_talk_to_human"]
    # nothing was posted at the top level of the channel
    assert [m.thread_ts for m in fake_slack.in_channel(SUPPORT_CHANNEL)] == [question["ts"]]


async def test_thread_reply_continues_the_conversation(fake_slack: FakeSlack,
                                                       slack: SlackAdapter) -> None:
    question = message_event(SUPPORT_CHANNEL, "How do I reset my password?")
    await deliver(fake_slack, slack, question)
    follow_up = message_event(SUPPORT_CHANNEL, "How do I turn on two-factor authentication?",
                              thread_ts=question["ts"])
    await deliver(fake_slack, slack, follow_up)
    replies = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
    assert len(replies) == 2
    conv = await slack.bot.store.load(_key(question["ts"]))
    assert [t.role for t in conv.turns] == ["customer", "bot", "customer", "bot"]


async def test_ignores_bots_edits_joins_and_other_channels(fake_slack: FakeSlack,
                                                           slack: SlackAdapter) -> None:
    ignored = [
        message_event(SUPPORT_CHANNEL, "How do I reset my password?", bot_id=BOT_ID,
                      user=BOT_USER_ID),
        message_event(SUPPORT_CHANNEL, "How do I reset my password?", bot_id="B0OTHER",
                      subtype="bot_message"),
        message_event(SUPPORT_CHANNEL, "<@U0CUST> has joined the channel",
                      subtype="channel_join"),
        message_event(SUPPORT_CHANNEL, "", subtype="message_changed", hidden=True,
                      message={"text": "How do I reset my password?"}),
        message_event(SUPPORT_CHANNEL, "", subtype="message_deleted", hidden=True),
        message_event("C0RANDOM", "How do I reset my password?"),
    ]
    for event in ignored:
        await deliver(fake_slack, slack, event)
    assert fake_slack.calls_to("chat.postMessage") == []
    # bolt itself drops the bot's own message; the adapter drops the other four kinds
    assert slack.outcomes["ignored"] >= 4 and slack.outcomes["not_routed"] == 1
    assert set(slack.outcomes) == {"ignored", "not_routed"}
    # ... and the same question from a person in the support channel is answered.
    question = message_event(SUPPORT_CHANNEL, "How do I reset my password?")
    await deliver(fake_slack, slack, question)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


async def test_dm_is_answered_at_top_level(fake_slack: FakeSlack, slack: SlackAdapter) -> None:
    dm = message_event("D0CUST", "How do I reset my password?", channel_type="im")
    await deliver(fake_slack, slack, dm)
    [reply] = fake_slack.in_channel("D0CUST")
    assert reply.thread_ts is None and "Reset password" in texts(reply.blocks)


async def test_mention_elsewhere_answers_in_thread_and_thread_continues(
        fake_slack: FakeSlack, slack: SlackAdapter) -> None:
    message = message_event("C0RANDOM", f"<@{BOT_USER_ID}> how do I reset my password?")
    await deliver(fake_slack, slack, mention_event(message))
    [reply] = fake_slack.thread("C0RANDOM", message["ts"])
    assert "Reset password" in texts(reply.blocks)
    # A reply in that thread, without a mention, continues the conversation ...
    await deliver(fake_slack, slack, message_event(
        "C0RANDOM", "How do I turn on two-factor authentication?", thread_ts=message["ts"]))
    assert len(fake_slack.thread("C0RANDOM", message["ts"])) == 2
    # ... but a thread the bot has never been part of stays unanswered.
    await deliver(fake_slack, slack, message_event(
        "C0RANDOM", "How do I reset my password?", thread_ts="1.000001"))
    assert fake_slack.thread("C0RANDOM", "1.000001") == []


async def test_retried_event_and_message_mention_pair_answer_once(
        fake_slack: FakeSlack, slack: SlackAdapter) -> None:
    message = message_event(SUPPORT_CHANNEL, f"<@{BOT_USER_ID}> how do I reset my password?")
    await deliver(fake_slack, slack, message, event_id="Ev1")
    await deliver(fake_slack, slack, mention_event(message), event_id="Ev2")
    await deliver(fake_slack, slack, message, retry_attempt=1, event_id="Ev1")
    await deliver(fake_slack, slack, mention_event(message), retry_attempt=2, event_id="Ev2")
    assert len(fake_slack.thread(SUPPORT_CHANNEL, message["ts"])) == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert slack.outcomes["answered"] == 1 and slack.outcomes["duplicate"] == 3


async def test_unknown_question_escalates_and_bot_goes_quiet(fake_slack: FakeSlack,
                                                             slack: SlackAdapter) -> None:
    question = message_event(SUPPORT_CHANNEL, "what is the meaning of life")
    await deliver(fake_slack, slack, question)
    [notice] = fake_slack.thread(SUPPORT_CHANNEL, question["ts"])
    assert "person" in texts(notice.blocks) and action_ids(notice.blocks) == []
    conv = await slack.bot.store.load(_key(question["ts"]))
    assert conv.state is ConversationState.WAITING_HUMAN


def _key(thread: str) -> Any:
    from bot.models import ConversationKey
    return ConversationKey("slack", TEAM_ID, SUPPORT_CHANNEL, thread)

"""Customer messages end to end: the real discord.py client against the fake Discord."""

from __future__ import annotations

from typing import Any

from bot.models import ConversationKey
from tests.discord_e2e.conftest import World
from tests.discord_e2e.fake_discord import MESSAGE_CONTENT_INTENT, FakeDiscord


async def test_question_opens_thread_with_cited_answer(world: World, fake: FakeDiscord,
                                                       start_client: Any) -> None:
    await start_client()
    question = await fake.say(world.support, world.customer, "How do I reset my password?")
    thread = question["id"]  # a thread started from a message has that message's id
    await fake.wait_until(lambda: len(fake.bot_messages(thread)) == 1)
    [created] = fake.calls_to("POST", rf"/channels/{world.support}/messages/{thread}/threads")
    assert created.body["name"] == "How do I reset my password?"
    [answer] = fake.bot_messages(thread)
    assert "Reset password" in answer["content"]
    [embed] = answer["embeds"]
    assert "Reset your password" in embed["description"]
    assert "/reset-password" in embed["description"]
    assert answer["allowed_mentions"] == {"parse": []}
    labels = [c["label"] for row in answer["components"] for c in row["components"]]
    assert labels == ["Helpful", "Not helpful", "Talk to a person"]
    assert not fake.bot_messages(world.support)  # nothing at the channel's top level



async def test_thread_reply_continues_the_conversation(world: World, fake: FakeDiscord,
                                                       start_client: Any) -> None:
    client = await start_client()
    question = await fake.say(world.support, world.customer, "How do I reset my password?")
    thread = question["id"]
    await fake.wait_until(lambda: len(fake.bot_messages(thread)) == 1)
    await fake.say(thread, world.customer, "How do I export my data?")
    await fake.wait_until(lambda: len(fake.bot_messages(thread)) == 2)
    assert "export" in fake.bot_messages(thread)[1]["content"].lower()
    await client.idle()  # the answer is posted before its turn is recorded
    # One thread, one conversation: both questions and both answers are in it.
    assert len(fake.calls_to("POST", r"/channels/\d+/messages/\d+/threads")) == 1
    conv = await client.support_bot.store.load(
        ConversationKey("discord", world.guild, world.support, thread))
    assert [t.role for t in conv.turns] == ["customer", "bot", "customer", "bot"]
    assert conv.turns[3].article_id == "export-data"


async def test_forum_post_is_answered_in_its_post(world: World, fake: FakeDiscord,
                                                  start_client: Any) -> None:
    await start_client()
    post = await fake.forum_post(world.forum, world.customer, "Refunds?",
                                 "Can I get a refund?")
    await fake.wait_until(lambda: len(fake.bot_messages(post["id"])) == 1)
    [answer] = fake.bot_messages(post["id"])
    assert "refund" in answer["content"].lower()
    assert not fake.calls_to("POST", r"/channels/\d+/messages/\d+/threads")  # already one


async def test_direct_message_is_answered_in_the_dm(world: World, fake: FakeDiscord,
                                                    start_client: Any) -> None:
    await start_client()
    dm = await fake.dm(world.customer, "How do I reset my password?")
    await fake.wait_until(lambda: len(fake.bot_messages(dm["channel_id"])) == 1)
    assert "Reset password" in fake.bot_messages(dm["channel_id"])[0]["content"]
    assert not fake.calls_to("POST", r"/channels/\d+/messages/\d+/threads")


async def test_mention_outside_support_channels_opens_a_thread(
        world: World, fake: FakeDiscord, start_client: Any) -> None:
    await start_client()
    me = fake.bot_user
    question = await fake.say(world.general, world.customer,
                              f"<@{me['id']}> How do I reset my password?", mentions=[me])
    await fake.wait_until(lambda: len(fake.bot_messages(question["id"])) == 1)
    [created] = fake.calls_to("POST", rf"/channels/{world.general}/messages/\d+/threads")
    assert created.body["name"] == "How do I reset my password?"  # the mention is stripped


async def test_other_channels_and_bots_are_ignored(world: World, fake: FakeDiscord,
                                                   start_client: Any) -> None:
    await start_client()
    other_bot = fake.user("otherbot", bot=True)
    await fake.say(world.general, world.customer, "How do I reset my password?")
    await fake.say(world.support, other_bot, "How do I reset my password?")
    # A marker that is answered: everything dispatched before it has been handled by now.
    marker = await fake.say(world.support, world.customer, "How do I export my data?")
    await fake.wait_until(lambda: len(fake.bot_messages(marker["id"])) == 1)
    [created] = fake.calls_to("POST", r"/channels/\d+/messages/\d+/threads")
    assert created.path.endswith(f"/{marker['id']}/threads")
    # The bot's own answer came back over the gateway as MESSAGE_CREATE and was ignored too.
    assert len(fake.bot_messages(marker["id"])) == 1


async def test_without_message_content_only_mentions_and_dms(
        world: World, fake: FakeDiscord, start_client: Any) -> None:
    await start_client(message_content=False)
    assert not fake.intents & MESSAGE_CONTENT_INTENT
    me = fake.bot_user
    await fake.say(world.support, world.customer, "How do I reset my password?")  # blanked
    dm = await fake.dm(world.customer, "How do I export my data?")
    mention = await fake.say(world.support, world.customer,
                             f"<@{me['id']}> Can I get a refund?", mentions=[me])
    await fake.wait_until(lambda: len(fake.bot_messages(mention["id"])) == 1
                          and len(fake.bot_messages(dm["channel_id"])) == 1)
    [created] = fake.calls_to("POST", r"/channels/\d+/messages/\d+/threads")
    assert created.path.endswith(f"/{mention['id']}/threads")

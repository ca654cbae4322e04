"""Customer messages end to end: the real discord.py client against the fake Discord."""

from __future__ import annotations

from typing import Any

from tests.discord_e2e.conftest import World
from tests.discord_e2e.fake_discord import FakeDiscord


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


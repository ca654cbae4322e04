"""Streaming, splitting, mentions and 429s through the real discord.py client."""

from __future__ import annotations

import itertools
from typing import Any

from tests.discord_e2e.conftest import World
from tests.discord_e2e.fake_discord import FakeDiscord
from tests.slack.scripted import StreamingAnswerer

# 50 partials 0.05 s apart (about 2.5 s of stream), about 3,000 characters in all: the
# answer outgrows one Discord message while it streams. The text tries to ping everyone.
WORDS = [f"w{i:02d}-" + "x" * 55 for i in range(50)]
WORDS[3] = "@everyone"
WORDS[7] = "<@&1234567890>"


async def test_streams_with_throttled_edits_split_at_2000(world: World, fake: FakeDiscord,
                                                          start_client: Any) -> None:
    client = await start_client(StreamingAnswerer(WORDS, step_s=0.05))
    question = await fake.say(world.support, world.customer, "stream please")
    thread = question["id"]
    await fake.wait_until(lambda: any(m["embeds"] for m in fake.bot_messages(thread)),
                          within_s=20)
    await client.idle()
    messages = fake.bot_messages(thread)
    assert len(messages) == 2
    assert all(len(m["content"]) <= 2000 for m in messages)
    assert " ".join(m["content"] for m in messages) == " ".join(WORDS)  # the final text
    assert [bool(m["embeds"]) for m in messages] == [False, True]  # sources on the last
    assert [bool(m["components"]) for m in messages] == [False, True]  # buttons too
    for message in messages:
        edits = fake.calls_to("PATCH", rf"/channels/{thread}/messages/{message['id']}")
        posted = [c for c in fake.calls_to("POST", rf"/channels/{thread}/messages")
                  if c.result and c.result["id"] == message["id"]]
        stamps = [c.at for c in posted + edits]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert min(gaps, default=1.0) >= 1.0, gaps  # never edited faster than once a second
    first_edits = fake.calls_to("PATCH", rf"/channels/{thread}/messages/{messages[0]['id']}")
    assert len(first_edits) >= 2  # it did stream into the first message
    writes = fake.calls_to("POST", rf"/channels/{thread}/messages") + \
        fake.calls_to("PATCH", rf"/channels/{thread}/messages/\d+")
    assert writes and all(w.body["allowed_mentions"] == {"parse": []} for w in writes)


async def test_rate_limited_post_is_retried_once(world: World, fake: FakeDiscord,
                                                 start_client: Any) -> None:
    client = await start_client()
    fake.rate_limit_next("POST", r"/channels/\d+/messages", retry_after=0.3)
    question = await fake.say(world.support, world.customer, "How do I reset my password?")
    thread = question["id"]
    await fake.wait_until(lambda: len(fake.bot_messages(thread)) == 1)
    await client.idle()
    posts = fake.calls_to("POST", rf"/channels/{thread}/messages")
    assert [p.status for p in posts] == [429, 200]  # refused once, then sent after the wait
    assert posts[1].at - posts[0].at >= 0.3
    assert len(fake.bot_messages(thread)) == 1
    assert "Reset password" in fake.bot_messages(thread)[0]["content"]

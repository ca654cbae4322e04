"""The gateway connection: heartbeats, and a dropped connection resumed mid-conversation
without losing or repeating a reply."""

from __future__ import annotations

from typing import Any

from bot.models import ConversationKey
from tests.discord_e2e.conftest import World
from tests.discord_e2e.fake_discord import HEARTBEAT, IDENTIFY, RESUME, FakeDiscord


async def test_dropped_connection_resumes_without_duplicate_replies(
        world: World, fake: FakeDiscord, start_client: Any) -> None:
    client = await start_client()
    first = await fake.say(world.support, world.customer, "How do I reset my password?")
    thread = first["id"]
    await fake.wait_until(lambda: len(fake.bot_messages(thread)) == 1)

    # Mid-conversation: a question goes out and the connection drops right behind it, and
    # another question is asked while the bot is away.
    second = await fake.say(thread, world.customer, "How do I export my data?")
    await fake.drop_connection()
    third = await fake.say(thread, world.customer, "Can I get a refund?")
    await fake.wait_until(fake.resumed.is_set)
    # Discord delivers at least once: the question sent just before the drop comes again.
    await fake.redeliver(fake.seq_of(second["id"]))
    # Handled in order: once this last question is answered, the redelivery was seen.
    await fake.say(thread, world.customer, "How do I invite my team?")
    await fake.wait_until(lambda: len(fake.bot_messages(thread)) >= 4)
    await client.idle()

    ops = [f["op"] for f in fake.gateway_ops]
    assert ops.count(IDENTIFY) == 1 and ops.count(RESUME) == 1  # resumed, not re-identified
    answers = [m["content"].lower() for m in fake.bot_messages(thread)]
    assert len(answers) == 4, answers  # one answer per question, none twice
    assert any("export" in a for a in answers) and any("refund" in a for a in answers)
    assert client.outcomes["duplicate"] == 1  # the redelivery reached the bot, which dropped it
    conv = await client.support_bot.store.load(
        ConversationKey("discord", world.guild, world.support, thread))
    customer_turns = [t.text for t in conv.turns if t.role == "customer"]
    assert sorted(customer_turns) == sorted(
        [first["content"], second["content"], third["content"], "How do I invite my team?"])
    assert sum(1 for t in conv.turns if t.role == "bot") == 4


async def test_heartbeats_are_sent_and_acknowledged(world: World, fake: FakeDiscord,
                                                    start_client: Any) -> None:
    client = await start_client()
    await fake.wait_until(lambda: sum(f["op"] == HEARTBEAT for f in fake.gateway_ops) >= 2,
                          within_s=5)  # the interval is 0.5 s: a second beat proves the loop
    assert client.latency < 5  # an ACK came back for a beat (inf until one does)

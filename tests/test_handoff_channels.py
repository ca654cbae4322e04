"""Each platform's own agents' channel: channel ids belong to one platform, so in one process
serving Slack and Discord a ticket's card goes to its own platform's agents' channel
(`agent_channel.<platform>`), with the shared `agent_channel` as the fallback."""

from __future__ import annotations

import pytest

from bot.keys import Keys
from bot.live_config import ConfigSnapshot
from bot.models import Inbound
from bot.service import Outcome
from tests.conftest import RecordingOutbox
from tests.handoff_fakes import RecordingDesk, Stack, make_stack
from tests.test_admin import ADMIN, admin_for

UNKNOWN = "what is the meaning of life"


def ask(platform: str, thread: str, event: str) -> Inbound:
    return Inbound(platform, "W1", f"{platform}-support", thread, "U1", UNKNOWN,
                   event_id=event, user_name="Ann")


@pytest.fixture
def two_platforms(redis_keys: Keys) -> tuple[Stack, RecordingDesk, RecordingDesk]:
    defaults = ConfigSnapshot(agent_channel="SHARED", agent_channels=(("discord", "D-AGENTS"),))
    stack = make_stack("memory", redis_keys, defaults=defaults)
    discord = RecordingDesk()
    stack.handoff.desks = {"slack": stack.desk, "discord": discord}
    return stack, stack.desk, discord


async def escalate(stack: Stack, platform: str, n: int) -> None:
    outcome = await stack.bot.handle(ask(platform, f"t{n}", f"e{n}"), RecordingOutbox())
    assert outcome is Outcome.ESCALATED


async def test_cards_go_to_their_platforms_channel_else_the_shared_one(
        two_platforms: tuple[Stack, RecordingDesk, RecordingDesk]) -> None:
    stack, slack, discord = two_platforms
    await escalate(stack, "discord", 1)
    await escalate(stack, "slack", 2)  # no Slack channel of its own: the shared one
    assert discord.card_channels == ["D-AGENTS"] and slack.card_channels == ["SHARED"]
    # Set live (what `/support config set agent_channel.slack` stores) it applies at once.
    await stack.live.set("agent_channel.slack", " S-AGENTS ")
    await escalate(stack, "slack", 3)
    assert slack.card_channels == ["SHARED", "S-AGENTS"]
    # Cleared, a platform falls back to the shared channel.
    await stack.live.set("agent_channel.discord", "")
    await escalate(stack, "discord", 4)
    assert discord.card_channels == ["D-AGENTS", "SHARED"]


async def test_reminders_go_to_the_platforms_channel(
        two_platforms: tuple[Stack, RecordingDesk, RecordingDesk]) -> None:
    stack, slack, discord = two_platforms
    await escalate(stack, "discord", 1)
    stack.clock.advance(11 * 60)
    assert await stack.handoff.sweep() == 1
    [(channel, text, _)] = discord.agent_notices
    assert channel == "D-AGENTS" and "Reminder" in text and slack.agent_notices == []


async def test_admins_set_show_and_clear_a_platforms_channel(redis_keys: Keys) -> None:
    stack = make_stack("memory", redis_keys, defaults=ConfigSnapshot(agent_channel="SHARED"))
    admin = admin_for(stack)
    reply = await admin.handle(ADMIN, "config set agent_channel.discord 333")
    assert reply.ok and "agent_channel.discord = '333'" in reply.text
    listing = (await admin.handle(ADMIN, "config get")).text
    assert "agent_channel = SHARED" in listing and "agent_channel.discord = 333" in listing
    assert "agent_channel.slack = (empty)" in listing
    assert (await stack.live.snapshot()).agent_channel_for("discord") == "333"
    assert (await admin.handle(ADMIN, "config set agent_channel.discord")).ok  # cleared
    assert (await stack.live.fresh()).agent_channel_for("discord") == "SHARED"
    unknown = await admin.handle(ADMIN, "config set agent_channel.teams 1")
    assert not unknown.ok and "unknown config key" in unknown.text

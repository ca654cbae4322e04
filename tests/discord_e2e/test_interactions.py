"""`/support` and buttons end to end: deferral, authorization on every call, ticket cards
with Claim / Resolve / Hand back, and buttons that keep working after a restart."""

from __future__ import annotations

from typing import Any

from bot.models import ConversationKey, ConversationState
from tests.discord_e2e.conftest import World, settle
from tests.discord_e2e.fake_discord import MANAGE_GUILD, VIEW_AND_SEND, Call, FakeDiscord

EPHEMERAL = 1 << 6


def followups(fake: FakeDiscord, payload: dict[str, Any]) -> list[Call]:
    return fake.calls_to("POST", rf"/webhooks/{fake.app_id}/{payload['token']}")


async def answered(fake: FakeDiscord, payload: dict[str, Any]) -> str:
    """Check the interaction was deferred (ephemeral) well within Discord's 3 s, then return
    the text of the one follow-up that answered it."""
    await fake.wait_until(lambda: bool(followups(fake, payload)))
    [callback] = fake.interaction_callbacks(payload["id"])
    assert callback.body["type"] == 5 and callback.body["data"]["flags"] & EPHEMERAL
    assert callback.at - payload["dispatched_at"] < 3.0
    [followup] = followups(fake, payload)
    assert followup.body["allowed_mentions"] == {"parse": []}
    return str(followup.body["content"])


def buttons(message: dict[str, Any]) -> dict[str, str]:
    return {c["label"]: c["custom_id"] for row in message["components"]
            for c in row["components"]}


async def test_unauthorised_support_command_is_refused(world: World, fake: FakeDiscord,
                                                       start_client: Any) -> None:
    client = await start_client()
    member = fake.member(world.customer, permissions=VIEW_AND_SEND)
    call = await fake.slash(world.guild, world.support, member, "pause")
    assert "only an admin" in await answered(fake, call)
    assert not (await client.admin.live.fresh()).paused_channels  # nothing changed


async def test_admin_role_or_manage_server_may_run_admin_commands(
        world: World, fake: FakeDiscord, start_client: Any) -> None:
    client = await start_client()
    # The group is registered per guild, hidden by default from non-managers.
    [support] = fake.commands[world.guild]
    assert int(support["default_member_permissions"]) == MANAGE_GUILD
    assert {o["name"] for o in support["options"]} >= {"pause", "claim", "kb", "config"}

    by_role = fake.member(world.admin, roles=[world.admin_role], permissions=VIEW_AND_SEND)
    call = await fake.slash(world.guild, world.support, by_role, "pause")
    assert "paus" in (await answered(fake, call)).lower()
    assert world.support in (await client.admin.live.fresh()).paused_channels

    manager = fake.member(fake.user("mona"), permissions=VIEW_AND_SEND | MANAGE_GUILD)
    call = await fake.slash(world.guild, world.support, manager, "resume")
    assert "resum" in (await answered(fake, call)).lower()
    assert not (await client.admin.live.fresh()).paused_channels


async def test_claim_silences_the_bot_until_handed_back(world: World, fake: FakeDiscord,
                                                        start_client: Any) -> None:
    client = await start_client()
    question = await fake.say(world.support, world.customer, "what is the meaning of life")
    thread = question["id"]
    key = ConversationKey("discord", world.guild, world.support, thread)
    await fake.wait_until(lambda: bool(fake.bot_messages(world.agents)))
    [card] = fake.bot_messages(world.agents)
    # The card pings the agents' role, and nothing else.
    assert f"<@&{world.agent_role}>" in card["content"]
    assert card["allowed_mentions"] == {"parse": [], "roles": [int(world.agent_role)]}
    assert card["embeds"][0]["title"].startswith("Ticket ")
    assert list(buttons(card)) == ["Claim", "Resolve", "Hand back"]
    [notice] = fake.bot_messages(thread)
    assert "person" in notice["content"]

    agent = fake.member(world.agent, roles=[world.agent_role], permissions=VIEW_AND_SEND)
    claim = await fake.click(card["id"], buttons(card)["Claim"], agent)
    assert "You have ticket" in await answered(fake, claim)
    await settle(fake, client)
    assert (await client.support_bot.store.load(key)).state is ConversationState.HUMAN
    assert "has joined" in fake.bot_messages(thread)[-1]["content"]
    assert list(buttons(fake.messages[card["id"]])) == ["Resolve", "Hand back"]

    before = len(fake.bot_messages(thread))
    await fake.say(thread, world.customer, "How do I reset my password?")
    await fake.say(thread, world.agent, "Hi, I'm Alex, let me look into this.")
    await settle(fake, client)
    assert len(fake.bot_messages(thread)) == before  # the bot stays silent
    turns = (await client.support_bot.store.load(key)).turns
    assert [t.role for t in turns[-2:]] == ["customer", "agent"]

    hand_back = await fake.click(card["id"], buttons(fake.messages[card["id"]])["Hand back"],
                                 agent)
    assert "handed back" in (await answered(fake, hand_back)).lower()
    await settle(fake, client)
    assert (await client.support_bot.store.load(key)).state is ConversationState.BOT
    again = await fake.say(thread, world.customer, "How do I export my data?")
    await fake.wait_until(lambda: "export" in fake.bot_messages(thread)[-1]["content"].lower())
    assert again["id"] != thread


async def test_buttons_keep_working_after_a_restart(world: World, fake: FakeDiscord,
                                                    start_client: Any) -> None:
    first = await start_client()
    question = await fake.say(world.support, world.customer, "How do I reset my password?")
    thread = question["id"]
    await fake.wait_until(lambda: len(fake.bot_messages(thread)) == 1)
    [answer] = fake.bot_messages(thread)
    assert buttons(answer)["Helpful"] == "sb_helpful:reset-password"
    await first.close()

    second = await start_client()  # a new process: no view was registered for that message
    customer = fake.member(world.customer, permissions=VIEW_AND_SEND)
    helpful = await fake.click(answer["id"], buttons(answer)["Helpful"], customer)
    assert "Thanks" in await answered(fake, helpful)
    person = await fake.click(answer["id"], buttons(answer)["Talk to a person"], customer)
    assert "ticket" in (await answered(fake, person)).lower()
    await settle(fake, second)
    assert len(fake.bot_messages(world.agents)) == 1  # the ticket card
    key = ConversationKey("discord", world.guild, world.support, thread)
    assert (await second.support_bot.store.load(key)).state is ConversationState.WAITING_HUMAN


async def test_thread_unknown_after_restart_is_looked_up(world: World, fake: FakeDiscord,
                                                         start_client: Any) -> None:
    first = await start_client()
    question = await fake.say(world.support, world.customer, "How do I reset my password?")
    thread = question["id"]
    await fake.wait_until(lambda: len(fake.bot_messages(thread)) == 1)
    await first.close()
    fake.archive(thread)  # not in the next GUILD_CREATE: the new process has never seen it

    second = await start_client()
    await fake.say(thread, world.customer, "How do I export my data?")
    await fake.wait_until(lambda: len(fake.bot_messages(thread)) == 2)
    assert fake.calls_to("GET", rf"/channels/{thread}")  # asked Discord what the thread is
    await second.idle()
    turns = (await second.support_bot.store.load(
        ConversationKey("discord", world.guild, world.support, thread))).turns
    assert [t.role for t in turns] == ["customer", "bot", "customer", "bot"]


async def test_ticket_card_id_link_and_reminder(world: World, fake: FakeDiscord,
                                                start_client: Any) -> None:
    client = await start_client()
    question = await fake.say(world.support, world.customer, "what is the meaning of life")
    await fake.wait_until(lambda: bool(fake.bot_messages(world.agents)))
    await client.idle()
    [card] = fake.bot_messages(world.agents)
    handoff = client.support_bot.handoff
    [ticket] = await handoff.active()
    assert ticket.card_id == f"{world.agents}/{card['id']}"
    assert ticket.link == f"https://discord.com/channels/{world.guild}/{question['id']}"

    # What the sweeper does for a ticket nobody claimed: a reply to the card, pinging agents.
    await handoff.desks["discord"].notify_agents("", "Reminder: nobody has claimed it",
                                                 ticket.card_id)
    reminder = fake.calls_to("POST", rf"/channels/{world.agents}/messages")[-1]
    assert str(reminder.body["message_reference"]["message_id"]) == card["id"]
    assert reminder.body["content"].startswith(f"<@&{world.agent_role}> Reminder")
    assert reminder.body["allowed_mentions"]["roles"] == [int(world.agent_role)]

"""The Discord adapter's pure parts: chunk planning, rendering, intents, invite URL, CLI."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import discord
from hypothesis import given
from hypothesis import strategies as st

from adapters.discordbot.client import build_intents, strip_mention
from adapters.discordbot.invite import REQUIRED_PERMISSIONS, application_id_from_token, invite_url
from adapters.discordbot.render import CONTENT_LIMIT, pieces
from adapters.discordbot.views import CUSTOM_ID_LIMIT, ActionButton, custom_id
from bot.chunks import plan_update
from bot.models import Citation, Reply, ReplyKind

ROOT = Path(__file__).resolve().parents[2]


@given(st.lists(st.text(max_size=3), max_size=6), st.lists(st.text(max_size=3), max_size=6))
def test_plan_update_turns_shown_into_wanted(shown: list[str], wanted: list[str]) -> None:
    plan = plan_update(shown, wanted)
    result = list(shown)
    for index, payload in plan.edits:
        assert result[index] != payload  # only what changed is edited
        result[index] = payload
    result.extend(plan.posts)
    for index in reversed(plan.deletes):
        del result[index]
    assert result == wanted


def test_long_reply_splits_with_sources_and_buttons_on_the_last_piece() -> None:
    citation = Citation("reset-password", "Reset your password", "https://x.example/r")
    reply = Reply(" ".join(["word"] * 1000), ReplyKind.ANSWER, citations=(citation,))
    parts = pieces(reply)
    assert len(parts) == 3 and all(len(p.content) <= CONTENT_LIMIT for p in parts)
    assert [bool(p.citations) for p in parts] == [False, False, True]
    assert [a for a, *_ in parts[-1].buttons] == ["sb_helpful", "sb_not_helpful",
                                                  "sb_talk_to_human"]
    assert {v for _, v, *_ in parts[-1].buttons} == {"reset-password"}
    partial = pieces(Reply("half an answer", ReplyKind.PARTIAL, citations=(citation,)))
    assert partial[0].citations == () and partial[0].buttons == ()
    kwargs = parts[-1].send_kwargs()
    assert kwargs["allowed_mentions"].to_dict() == {"parse": []}
    assert "[Reset your password](https://x.example/r)" in kwargs["embeds"][0].description


def test_custom_ids_carry_action_and_value_within_discords_limit() -> None:
    button = ActionButton("sb_claim", "T17")
    assert button.item.custom_id == "sb_claim:T17" and button.item.label == "Claim"
    assert ActionButton("sb_helpful", "").item.custom_id == "sb_helpful:"
    too_long = "x" * CUSTOM_ID_LIMIT
    try:
        custom_id("sb_helpful", too_long)
    except ValueError:
        pass
    else:
        raise AssertionError("a custom_id over 100 characters must be refused")


def test_intents_are_the_smallest_set() -> None:
    with_content = build_intents(True)
    assert with_content.value == discord.Intents(
        guilds=True, guild_messages=True, dm_messages=True, message_content=True).value
    assert not build_intents(False).message_content
    assert not with_content.members and not with_content.presences  # nothing privileged else


def test_strip_mention_removes_only_the_bot() -> None:
    assert strip_mention("<@42> hi <@7> <@!42>", 42) == "hi <@7>"


def test_invite_url_asks_for_exactly_the_needed_permissions() -> None:
    query = parse_qs(urlparse(invite_url("1234")).query)
    assert query["client_id"] == ["1234"]
    assert query["scope"] == ["bot applications.commands"]
    granted = discord.Permissions(int(query["permissions"][0]))
    assert granted == REQUIRED_PERMISSIONS
    assert granted.create_public_threads and granted.send_messages_in_threads
    assert not (granted.administrator or granted.mention_everyone or granted.manage_messages)


def test_application_id_is_read_from_the_token() -> None:
    head = base64.b64encode(b"123456789012345678").decode().rstrip("=")
    assert application_id_from_token(f"{head}.GxYz.abc") == "123456789012345678"
    assert application_id_from_token("not-a-token") == ""


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "adapters.cli", "discord", *args], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=120)


def test_cli_invite_url_and_missing_token() -> None:
    head = base64.b64encode(b"987654321098765432").decode().rstrip("=")
    result = run_cli("invite-url", env={"SUPPORTBOT_DISCORD_TOKEN": f"{head}.a.b"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == invite_url("987654321098765432")
    missing = run_cli(env={})
    assert missing.returncode == 2 and "SUPPORTBOT_DISCORD_TOKEN" in missing.stderr

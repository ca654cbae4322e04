"""Pure pieces of the Slack adapter: event translation and Block Kit rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from adapters.slack.blocks import MAX_BLOCKS, SECTION_LIMIT, render_reply, to_mrkdwn
from adapters.slack.events import DM_THREAD, translate
from bot.models import Citation, Reply, ReplyKind

BOT = "U0BOT"


def event(**fields: Any) -> dict[str, Any]:
    base = {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "10.000001"}
    base.update(fields)
    return base


def test_delivery_id_is_the_same_for_message_and_mention() -> None:
    text = f"<@{BOT}> help me"
    a = translate(event(text=text), "T1", BOT)
    b = translate(event(type="app_mention", text=text), "T1", BOT)
    assert a is not None and b is not None
    assert a.inbound.event_id == b.inbound.event_id == "C1-10.000001"
    assert a.inbound.text == "help me" and a.arrival.mentions_bot


def test_threads_and_dms() -> None:
    top = translate(event(), "T1", BOT)
    reply = translate(event(ts="11.0", thread_ts="10.000001"), "T1", BOT)
    dm = translate(event(channel="D1", channel_type="im"), "T1", BOT)
    assert top is not None and reply is not None and dm is not None
    assert (top.inbound.thread, top.reply_thread_ts, top.arrival.in_thread) == \
        ("10.000001", "10.000001", False)
    assert (reply.inbound.thread, reply.arrival.in_thread) == ("10.000001", True)
    assert (dm.inbound.thread, dm.reply_thread_ts, dm.inbound.is_dm) == (DM_THREAD, None, True)


def test_ignored_events() -> None:
    for fields in ({"subtype": "channel_join"}, {"subtype": "message_changed"},
                   {"subtype": "message_deleted"}, {"bot_id": "B1"}, {"user": BOT},
                   {"text": f"<@{BOT}>"}, {"user": None}):
        assert translate(event(**fields), "T1", BOT) is None, fields
    assert translate(event(subtype="thread_broadcast"), "T1", BOT) is not None


def test_model_text_cannot_mention_or_link() -> None:
    text = "<!channel> <@U123> <https://evil.example|click> & **bold** [docs](https://ok.example)"
    out = to_mrkdwn(text)
    assert "<!channel>" not in out and "<@U123>" not in out and "<https://evil" not in out
    assert "&lt;!channel&gt;" in out and "&amp;" in out
    assert "*bold*" in out and "<https://ok.example|docs>" in out


def test_partial_has_no_buttons_final_answer_has_them() -> None:
    partial = render_reply(Reply("half …", ReplyKind.PARTIAL))
    final = render_reply(Reply("done", ReplyKind.ANSWER, citations=(Citation("a", "A"),)))
    assert [b["type"] for b in partial[0].blocks] == ["section"]
    assert [b["type"] for b in final[0].blocks] == ["section", "context", "actions"]
    assert final[0].blocks[2]["elements"][0]["value"] == "a"  # the cited article id


@given(st.integers(min_value=0, max_value=160_000))
def test_pages_respect_slack_limits(size: int) -> None:
    text = ("word " * (size // 5 + 1))[:size]
    pages = render_reply(Reply(text, ReplyKind.ANSWER, citations=(Citation("a", "A"),)))
    for page in pages:
        assert 1 <= len(page.blocks) <= MAX_BLOCKS
        for block in page.blocks:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= SECTION_LIMIT
    assert pages[-1].blocks[-1]["type"] == "actions"
    body = " ".join(b["text"]["text"] for p in pages for b in p.blocks if b["type"] == "section")
    assert body.split() == text.split()


def test_manifest_matches_what_the_adapter_uses() -> None:
    import yaml

    from adapters.slack.app import SLASH_COMMAND

    path = Path(__file__).resolve().parents[2] / "deploy" / "slack-app-manifest.yaml"
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.channels", "message.groups", "message.im"} <= events
    assert manifest["features"]["slash_commands"][0]["command"] == SLASH_COMMAND
    assert manifest["settings"]["interactivity"]["is_enabled"]
    assert manifest["settings"]["socket_mode_enabled"]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "channels:history", "groups:history", "im:history",
            "chat:write", "commands", "users:read", "usergroups:read"} <= scopes

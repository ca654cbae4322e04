"""The console plays both sides: customer lines, `agent:` lines and `/support` commands."""

from __future__ import annotations

import io

from adapters.console import CONSOLE_STAFF, ConsoleDesk, ConsoleSession
from adapters.wiring import build_support
from bot.settings import load_settings


async def play(lines: list[str]) -> str:
    out = io.StringIO()
    support = build_support(load_settings(redis_url=""), {"console": ConsoleDesk(out)},
                            extra_admins=CONSOLE_STAFF)
    await ConsoleSession(support.bot, out, admin=support.admin).run_script(lines)
    await support.close()
    return out.getvalue()


async def test_escalate_claim_reply_resolve_then_bot_again() -> None:
    out = await play([
        "what is the meaning of life",
        "agent: claim",
        "hello?",
        "agent: Hi, Sam here. That is out of scope, sorry.",
        "agent: resolve told them",
        "How do I reset my password?",
        "/support tickets",
    ])
    lines = out.splitlines()
    card = next(i for i, ln in enumerate(lines) if ln.startswith("[agents] Ticket T1:"))
    assert "[agents]   [Claim] [Resolve] [Hand back]" in lines[card:]
    joined = lines.index("bot> Sam (agent) has joined the conversation.")
    hello = lines.index("customer> hello?")
    assert joined < hello and not lines[hello + 1].startswith("bot>")  # silent while human
    assert "agent> Hi, Sam here. That is out of scope, sorry." in lines
    assert any("resolved: told them." in ln for ln in lines)
    answer = lines.index("customer> How do I reset my password?")
    assert lines[answer + 1].startswith("bot> Open **Settings")
    assert lines[-1] == "support> No active tickets."


async def test_agent_action_without_ticket_and_unknown_command() -> None:
    out = await play(["agent: claim", "/support frobnicate"])
    assert "support> This conversation has no open ticket." in out
    assert "support> Unknown command 'frobnicate'. Try /support help." in out

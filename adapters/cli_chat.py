"""`supportbot chat`: talk to the bot in the terminal, or replay a script of customer lines."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from adapters.console import CONSOLE_STAFF, ConsoleDesk, ConsoleSession
from adapters.wiring import build_support
from bot.settings import load_settings
from bot.store_memory import MemoryStore


def register(sub: Any) -> None:
    p = sub.add_parser("chat", help="chat with the bot in the terminal")
    p.add_argument("--script", type=Path, help="replay customer lines from FILE (one per line)")
    p.add_argument("--kb", type=Path, help="knowledge-base directory (default: settings)")
    p.set_defaults(func=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    settings = load_settings(**({"kb_dir": args.kb} if args.kb else {}))
    if args.script is not None and not args.script.is_file():
        print(f"chat: script not found: {args.script}", file=sys.stderr)
        return 2
    lines = args.script.read_text(encoding="utf-8").splitlines() if args.script else None
    return asyncio.run(_chat(settings, lines))


async def _chat(settings: Any, script: list[str] | None) -> int:
    try:
        support = build_support(settings, {"console": ConsoleDesk(sys.stdout)},
                                extra_admins=CONSOLE_STAFF)
    except FileNotFoundError as exc:
        print(f"chat: {exc}", file=sys.stderr)
        return 2
    if isinstance(support.bot.store, MemoryStore):
        # One terminal handles one line at a time: no message can overtake another, so the
        # lock's wait for earlier messages still in flight (250 ms each) buys nothing here.
        support.bot.store.lock_settle_s = 0.0
    session = ConsoleSession(support.bot, admin=support.admin)
    try:
        if script is not None:
            await session.run_script(script)
        else:
            await session.run_interactive()
    finally:
        await support.close()
    return 0

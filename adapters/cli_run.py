"""`supportbot run`: one process serving every adapter that has credentials.

The embedded default (design.md, "Processes"): Slack and/or Discord share one bot stack (one
store, handoff, tickets and live config; adapters/wiring.one_support_stack), one engine
client and one handoff sweeper. Each platform is built by its own process builder and served
by adapters/lifecycle.py, so this process and `supportbot slack` / `supportbot discord` wire,
start and stop a platform the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from adapters.lifecycle import AdapterBuilder, serve_adapters
from adapters.serve import serve_forever, until_signalled
from bot.settings import Settings, load_settings

NO_ADAPTER = (
    "run: no adapter has credentials. Set at least one of:\n"
    "  Slack: SUPPORTBOT_SLACK_BOT_TOKEN and SUPPORTBOT_SLACK_APP_TOKEN (Socket Mode), or\n"
    "         SUPPORTBOT_SLACK_BOT_TOKEN, SUPPORTBOT_SLACK_SIGNING_SECRET and "
    "SUPPORTBOT_SLACK_MODE=http\n"
    "  Discord: SUPPORTBOT_DISCORD_TOKEN\n"
    "(README: Slack setup, Discord setup)")


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run every adapter that has credentials in one process")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    platforms, problems = configured_platforms(settings)
    if problems:
        print("run: missing settings:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if not platforms:
        print(NO_ADAPTER, file=sys.stderr)
        return 2
    return serve_forever(until_signalled(lambda stop: run_adapters(settings, stop)))


def configured_platforms(settings: Settings) -> tuple[list[str], list[str]]:
    """(platforms to start, what is missing). A platform with some of its credentials set is
    meant to run: a missing one is reported rather than the platform silently left out."""
    platforms: list[str] = []
    problems: list[str] = []
    if settings.slack_bot_token or settings.slack_app_token or settings.slack_signing_secret:
        from adapters.slack.process import settings_problems  # slack libs only when used

        problems += settings_problems(settings)
        platforms.append("slack")
    if settings.discord_token:
        platforms.append("discord")
    return platforms, problems


def build_adapter(platform: str) -> AdapterBuilder:
    """The platform's own process builder, the one `supportbot slack` / `discord` use; its
    libraries are imported only when that platform runs."""
    if platform == "slack":
        from adapters.slack.process import slack_adapter

        return slack_adapter
    from adapters.discordbot.app import discord_adapter

    return discord_adapter


async def run_adapters(settings: Settings, stop: asyncio.Event) -> None:
    """Serve every configured platform until `stop` is set (adapters/lifecycle.py: one
    engine client, one stack, one sweeper; drained and closed in reverse on stop)."""
    platforms, problems = configured_platforms(settings)
    if problems or not platforms:
        raise ValueError("\n".join(problems) or NO_ADAPTER)
    await serve_adapters("run", settings, [build_adapter(p) for p in platforms], stop)

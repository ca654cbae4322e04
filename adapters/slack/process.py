"""One Slack adapter process: wire the support stack to Slack and run until stopped.

Used by `supportbot slack` (adapters/cli_slack.py). The platform-neutral stack comes from
adapters/wiring.build_support; this module only adds what is Slack's: the Web API client,
the agent desk, the bolt app and the Socket Mode or HTTP runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from adapters.slack.app import SlackAdapter
from adapters.slack.client import make_client
from adapters.slack.desk import SlackAgentDesk
from adapters.slack.runners import HttpRunner, SocketModeRunner
from adapters.wiring import Support, build_support
from bot.routing import MessageRouter
from bot.settings import Settings

log = logging.getLogger(__name__)


def settings_problems(settings: Settings) -> list[str]:
    """What keeps the Slack adapter from starting, phrased as what to set."""
    problems = []
    if not settings.slack_bot_token.startswith("xoxb-"):
        problems.append("SUPPORTBOT_SLACK_BOT_TOKEN: the bot token (xoxb-...)")
    if settings.slack_mode == "socket" and not settings.slack_app_token.startswith("xapp-"):
        problems.append("SUPPORTBOT_SLACK_APP_TOKEN: an app-level token (xapp-...) with "
                        "connections:write, for Socket Mode (or SUPPORTBOT_SLACK_MODE=http)")
    if settings.slack_mode == "http" and not settings.slack_signing_secret:
        problems.append("SUPPORTBOT_SLACK_SIGNING_SECRET: the app's signing secret, "
                        "needed to verify requests in HTTP mode")
    return problems


def build_slack(settings: Settings) -> tuple[SlackAdapter, Support]:
    client = make_client(settings.slack_bot_token, settings.slack_api_url)
    support = build_support(settings, {"slack": SlackAgentDesk(client)})
    adapter = SlackAdapter(
        support.bot, client, MessageRouter(support.bot.store, support.live),
        signing_secret=settings.slack_signing_secret, admin=support.admin,
        interactions=support.interactions, command=settings.slack_command)
    return adapter, support


def make_runner(adapter: SlackAdapter, settings: Settings) -> SocketModeRunner | HttpRunner:
    if settings.slack_mode == "http":
        return HttpRunner(adapter, settings.slack_http_host, settings.slack_http_port,
                          settings.slack_http_path)
    return SocketModeRunner(adapter, settings.slack_app_token)


async def run_slack(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve Slack until `stop` is set (or the task is cancelled), then drain and close."""
    adapter, support = build_slack(settings)
    runner = make_runner(adapter, settings)
    sweeper = asyncio.create_task(support.sweeper.run())
    try:
        await runner.start()
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.stop()  # stops taking events, then lets scheduled work finish
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await support.close()

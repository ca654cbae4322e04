"""One Slack adapter process: wire the support stack to Slack and run until stopped.

Used by `supportbot slack` (adapters/cli_slack.py) and `supportbot run`. The platform-neutral
stack comes from adapters/wiring.build_support and the start/stop sequence (engine client,
sweeper, drain) from adapters/lifecycle.py; this module only adds what is Slack's: the Web
API client, the agent desk, the bolt app and the Socket Mode or HTTP runner.
"""

from __future__ import annotations

import asyncio
import logging

from adapters.lifecycle import Adapter, serve_adapters
from adapters.slack.app import SlackAdapter
from adapters.slack.client import make_client
from adapters.slack.desk import SlackAgentDesk
from adapters.slack.runners import HttpRunner, SocketModeRunner
from adapters.wiring import Support, build_support
from bot.ports import LLM
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


def slack_adapter(settings: Settings) -> Adapter:
    """Slack, built and ready to start (adapters/lifecycle.py serves it)."""
    adapter, support = build_slack(settings)
    runner = make_runner(adapter, settings)

    async def start() -> None:  # Socket Mode reconnects on its own: nothing to watch
        await runner.start()

    # runner.stop: stops taking events, then lets scheduled work (replies) finish
    return Adapter(f"slack ({settings.slack_mode} mode)", support, start, runner.stop)


async def run_slack(settings: Settings, stop: asyncio.Event | None = None,
                    llm: LLM | None = None) -> None:
    """`supportbot slack`: serve Slack until `stop` is set (or the task is cancelled), with
    the engine client SUPPORTBOT_LLM names (or `llm`, which the caller closes), then drain
    and close."""
    await serve_adapters("slack", settings, [slack_adapter], stop or asyncio.Event(), llm)

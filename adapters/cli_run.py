"""`supportbot run`: one process serving every adapter that has credentials.

The embedded default (design.md, "Processes"): Slack and/or Discord share one bot stack (one
store, handoff, tickets and live config; adapters/wiring.one_support_stack), one engine
client and one handoff sweeper. Each platform is built by its own process builder, so this
process and `supportbot slack` / `supportbot discord` wire a platform the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from adapters.llm_factory import ClosableLLM, build_llm
from adapters.serve import serve_forever, stop_on_signals
from adapters.wiring import Support, one_support_stack
from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)

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
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    platforms, problems = configured_platforms(settings)
    if problems:
        print("run: missing settings:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if not platforms:
        print(NO_ADAPTER, file=sys.stderr)
        return 2
    return serve_forever(_until_signalled(settings))


async def _until_signalled(settings: Settings) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    await run_adapters(settings, stop)


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


def engine_client(settings: Settings) -> ClosableLLM:
    """The process's one engine client (SUPPORTBOT_LLM: in-process by default, or shared
    `supportbot engine` workers, or an OpenAI-compatible server), shared by every adapter
    through the one stack. In-process it loads the model: seconds of CPU."""
    return build_llm(settings)


# ---- the adapters ----------------------------------------------------------------------------


@dataclass
class Adapter:
    """One platform, built (no network yet) and ready to start."""

    label: str  # for the log
    support: Support
    start: Callable[[], Awaitable[asyncio.Task[None] | None]]  # a task: its connection loop
    stop: Callable[[], Awaitable[None]]  # stop taking events, finish replies, disconnect


def build_slack_adapter(settings: Settings) -> Adapter:
    from adapters.slack.process import build_slack, make_runner

    adapter, support = build_slack(settings)
    runner = make_runner(adapter, settings)

    async def start() -> None:  # Socket Mode reconnects on its own: nothing to watch
        await runner.start()

    return Adapter(f"slack ({settings.slack_mode} mode)", support, start, runner.stop)


def build_discord_adapter(settings: Settings) -> Adapter:
    from adapters.discordbot.app import build_discord

    client, support = build_discord(settings)
    task: asyncio.Task[None] | None = None

    async def start() -> asyncio.Task[None]:
        nonlocal task
        if not settings.discord_message_content:
            log.warning("discord: message-content intent off: only mentions and DMs are "
                        "answered")
        task = asyncio.create_task(client.start(settings.discord_token, reconnect=True))
        return task

    async def stop() -> None:
        await client.close()  # waits for replies being written, then disconnects
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task  # its outcome, if it crashed, was reported by run_adapters

    return Adapter("discord", support, start, stop)


BUILDERS: dict[str, Callable[[Settings], Adapter]] = {
    "slack": build_slack_adapter, "discord": build_discord_adapter}


async def run_adapters(settings: Settings, stop: asyncio.Event) -> None:
    """Serve every configured platform until `stop` is set, then stop taking events, let
    replies finish, stop the sweeper, close the stack and the engine client. A platform whose
    connection loop ends on its own takes the process down with it (its error re-raised), so
    a supervisor restarts the whole process rather than leaving it half-serving."""
    platforms, problems = configured_platforms(settings)
    if problems or not platforms:
        raise ValueError("\n".join(problems) or NO_ADAPTER)
    async with contextlib.AsyncExitStack() as cleanup:  # unwinds in reverse order
        # Off the event loop: a model load must not keep SIGTERM from being handled.
        llm = await asyncio.to_thread(engine_client, settings)
        cleanup.push_async_callback(llm.close)
        with one_support_stack(settings, llm):
            adapters = [BUILDERS[name](settings) for name in platforms]
        support = adapters[0].support  # the same object for each (one_support_stack)
        cleanup.push_async_callback(support.close)
        sweeper = asyncio.create_task(support.sweeper.run())
        cleanup.push_async_callback(_cancel, sweeper)
        watched: dict[asyncio.Task[Any], str] = {}
        for adapter in adapters:
            task = await adapter.start()
            cleanup.push_async_callback(adapter.stop)
            if task is not None:
                watched[task] = adapter.label
        _log_started(settings, adapters)
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *watched], return_when=asyncio.FIRST_COMPLETED)
        await _cancel(stopped)
        for ended in done & watched.keys():
            log.error("run: %s stopped on its own; stopping every adapter", watched[ended])
            await cleanup.aclose()
            ended.result()  # re-raise what ended it
            raise RuntimeError(f"{watched[ended]} stopped unexpectedly")
    log.info("run: stopped")


def _log_started(settings: Settings, adapters: list[Adapter]) -> None:
    log.info("run: started %s, sharing one bot stack and one engine client (%s)",
             ", ".join(a.label for a in adapters), settings.llm)
    if not settings.redis_url:
        log.warning("run: no SUPPORTBOT_REDIS_URL: the in-memory store is single-process; "
                    "run no other supportbot process against this bot, or set "
                    "SUPPORTBOT_REDIS_URL")


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

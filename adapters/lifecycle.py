"""One adapter process from start to stop, shared by `supportbot run`, `supportbot slack` and
`supportbot discord` so that every one of them builds, serves and shuts down alike.

Start: the engine client (SUPPORTBOT_LLM, adapters/llm_factory.build_llm; loaded off the
event loop), one bot stack for every platform of the process (adapters/wiring
.one_support_stack, built with that client), one handoff sweeper, then each platform's
connection. Stop (`stop` set, e.g. by adapters/serve.stop_on_signals): in reverse, each
platform stops taking events and lets replies being written finish, then the sweeper stops,
the stack closes and the engine client closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.llm_factory import build_llm
from adapters.wiring import Support, one_support_stack
from bot.ports import LLM
from bot.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Adapter:
    """One platform, built (no network yet) and ready to start."""

    label: str  # for the log
    support: Support
    start: Callable[[], Awaitable[asyncio.Task[None] | None]]  # a task: its connection loop
    stop: Callable[[], Awaitable[None]]  # stop taking events, finish replies, disconnect


AdapterBuilder = Callable[[Settings], Adapter]


async def serve_adapters(name: str, settings: Settings, builders: Sequence[AdapterBuilder],
                         stop: asyncio.Event, llm: LLM | None = None) -> None:
    """Serve the platforms `builders` build until `stop` is set (or this is cancelled), then
    unwind as the module docstring says. `name` prefixes the log lines. `llm`: an engine
    client the caller built and closes itself (tests); None builds one from the settings.

    A platform whose connection loop ends on its own takes the process down with it (its
    error re-raised), so a supervisor restarts the whole process rather than leaving it
    half-serving."""
    async with contextlib.AsyncExitStack() as cleanup:  # unwinds in reverse order
        engine: str = settings.llm
        if llm is None:
            # Off the event loop: loading a model in-process takes seconds of CPU, and the
            # loop must stay free to handle SIGTERM meanwhile.
            built = await asyncio.to_thread(build_llm, settings)
            cleanup.push_async_callback(built.close)
            llm = built
        else:
            engine = f"given {type(llm).__name__}"
        if stop.is_set():  # stopped while the model loaded: connect nowhere
            log.info("%s: stopped before starting", name)
            return
        with one_support_stack(settings, llm):
            adapters = [build(settings) for build in builders]
        support = adapters[0].support  # the same object for each (one_support_stack)
        cleanup.push_async_callback(support.close)
        sweeper = asyncio.create_task(support.sweeper.run())
        cleanup.push_async_callback(cancel, sweeper)
        watched: dict[asyncio.Task[Any], str] = {}
        for adapter in adapters:
            task = await adapter.start()
            cleanup.push_async_callback(adapter.stop)
            if task is not None:
                watched[task] = adapter.label
        _log_started(name, settings, adapters, engine)
        stopped = asyncio.create_task(stop.wait())
        cleanup.push_async_callback(cancel, stopped)  # also when this task is cancelled
        done, _ = await asyncio.wait([stopped, *watched], return_when=asyncio.FIRST_COMPLETED)
        for ended in done & watched.keys():
            log.error("%s: %s stopped on its own; stopping every adapter", name,
                      watched[ended])
            await cleanup.aclose()
            ended.result()  # re-raise what ended it
            raise RuntimeError(f"{watched[ended]} stopped unexpectedly")
    log.info("%s: stopped", name)


def _log_started(name: str, settings: Settings, adapters: Sequence[Adapter],
                 engine: str) -> None:
    log.info("%s: started %s, sharing one bot stack and one engine client (%s)", name,
             ", ".join(a.label for a in adapters), engine)
    if not settings.redis_url:
        log.warning("%s: no SUPPORTBOT_REDIS_URL: the in-memory store is single-process; "
                    "run no other supportbot process against this bot, or set "
                    "SUPPORTBOT_REDIS_URL", name)


async def cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

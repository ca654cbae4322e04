"""Run a long-lived process from a CLI subcommand: log to stderr, stop on SIGTERM / Ctrl-C.

Shared by `supportbot run`, `slack`, `discord` and `engine` so they start and stop alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def serve_forever(main: Coroutine[Any, Any, None]) -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to stop it
        asyncio.run(main)
    return 0


def stop_on_signals(stop: asyncio.Event,
                    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
                    ) -> None:
    """Set `stop` on SIGTERM (docker stop, Kubernetes) or SIGINT (Ctrl-C), so the process
    stops taking events, lets replies being written finish and closes its connections,
    instead of dying mid-answer. Call from inside the running event loop."""
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)


async def until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` with `stop` set on SIGTERM or SIGINT (stop_on_signals), then remove
    those handlers again, leaving the event loop as it found it."""
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    stop_on_signals(stop, signals)
    try:
        await main(stop)
    finally:
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.remove_signal_handler(sig)

"""Run a long-lived adapter process from a CLI subcommand: log to stderr, stop on Ctrl-C.

Shared by the `supportbot slack` / `discord` style commands so they start and stop alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def serve_forever(main: Coroutine[Any, Any, None]) -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to stop it
        asyncio.run(main)
    return 0

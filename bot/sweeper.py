"""The one background sweeper for handoff timeouts, shared by every process.

Each process runs a Sweeper; only the holder of the Redis lease sweeps (the lease outlives
one interval, so a crashed holder is replaced within `lease_s`). Reminders are additionally
counted with a compare-and-set on the ticket, so even two sweepers never double-send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket

from bot.handoff import Handoff
from bot.tickets import TicketStore

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, handoff: Handoff, tickets: TicketStore, interval_s: float = 30.0,
                 lease_s: float | None = None, owner: str = "") -> None:
        self.handoff = handoff
        self.tickets = tickets
        self.interval_s = interval_s
        self.lease_s = lease_s if lease_s is not None else 3 * interval_s
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    async def tick(self) -> int | None:
        """One round: None when another process holds the lease, else reminders sent."""
        if not await self.tickets.lease(self.owner, self.lease_s):
            return None
        return await self.handoff.sweep()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Sweep every interval until `stop` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # a failed round (Redis blip) must not end the loop
                log.exception("handoff sweep failed; retrying next interval")
            with contextlib.suppress(TimeoutError):  # the interval passed without a stop
                await asyncio.wait_for(stop.wait(), self.interval_s)

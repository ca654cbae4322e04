"""Stream a growing answer into one platform message without breaking rate limits.

Both Slack and Discord allow about one edit per second per message, so partial text is
coalesced: the first partial posts a placeholder, later ones edit it at most once per
`min_interval_s`, and `finish` always writes the final reply (into the same message).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bot.models import Reply, ReplyKind
from bot.ports import Outbox


class ThrottledStream:
    def __init__(self, outbox: Outbox, min_interval_s: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._outbox = outbox
        self._min_interval_s = min_interval_s
        self._monotonic = monotonic
        self._message_id: str | None = None
        self._last_edit = float("-inf")
        self._last_text = ""
        self.edits = 0

    @property
    def message_id(self) -> str | None:
        return self._message_id

    async def partial(self, text: str) -> None:
        """Show text written so far, unless the last write was too recent."""
        if not text.strip() or text == self._last_text:
            return
        now = self._monotonic()
        if now - self._last_edit < self._min_interval_s:
            return
        reply = Reply(text=text + " …", kind=ReplyKind.PARTIAL)
        if self._message_id is None:
            self._message_id = await self._outbox.post(reply)
        else:
            await self._outbox.edit(self._message_id, reply)
            self.edits += 1
        self._last_edit = self._monotonic()
        self._last_text = text

    async def finish(self, reply: Reply) -> str:
        """Write the final reply: edit the streamed message, or post it if nothing streamed.

        The final edit waits out the interval rather than being dropped: it must land.
        """
        if self._message_id is None:
            self._message_id = await self._outbox.post(reply)
        else:
            wait = self._min_interval_s - (self._monotonic() - self._last_edit)
            if wait > 0:
                await asyncio.sleep(wait)
            await self._outbox.edit(self._message_id, reply)
            self._last_edit = self._monotonic()
            self.edits += 1
        return self._message_id

"""The slack-bolt AsyncApp: Slack events, button presses and `/support` in, the bot's work out.

Every listener only validates and *schedules* its work, so Slack gets its ack at once (well
inside its 3 s) whatever the engine is doing. The app runs with process_before_response=True
on purpose: the ack is sent after the listener returned, i.e. after the work is scheduled in
this process, so a test (or a shutdown) that saw the ack can wait for the work with
`idle()`. Work runs in tracked tasks; `aclose()` lets them finish.

Exactly-once: deliveries are deduplicated by the bot's store on channel + message ts (see
events.py), which covers Slack's retries (`X-Slack-Retry-Num`, Socket Mode `retry_attempt`)
and the `message` + `app_mention` pair of one mention alike.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import translate
from adapters.slack.outbox import SlackOutbox
from bot.routing import MessageRouter
from bot.service import SupportBot

log = logging.getLogger(__name__)

ACTION_IDS = re.compile(r"^sb_")
SLASH_COMMAND = "/support"

class SlackAdapter:
    def __init__(self, bot: SupportBot, client: AsyncWebClient, router: MessageRouter,
                 signing_secret: str = "", command: str = SLASH_COMMAND) -> None:
        self.bot = bot
        self.client = client
        self.router = router
        self.command = command
        self.outcomes: Counter[str] = Counter()  # what became of each delivery, for /metrics
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = AsyncApp(
            client=client,
            signing_secret=signing_secret,
            # See the module docstring: listeners only schedule, so this still acks at once.
            process_before_response=True,
            # No OAuth here: one workspace, one bot token (auth.test tells us who we are).
            name="supportbot",
        )
        self.app.event("message")(self._on_message_event)
        self.app.event("app_mention")(self._on_message_event)

    # ---- task tracking --------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.create_task(self._guard(work, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(work: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await work
        except Exception:  # one bad event must never take the adapter down
            log.exception("slack: %s failed", what)

    async def idle(self) -> None:
        """Wait until every piece of scheduled work (and work it scheduled) has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        await self.idle()

    # ---- messages -------------------------------------------------------------------------

    async def _on_message_event(self, event: dict[str, Any], body: dict[str, Any],
                                context: dict[str, Any]) -> None:
        team_id = str(body.get("team_id") or context.get("team_id") or "")
        bot_user_id = str(context.get("bot_user_id") or "")
        self.spawn(self.handle_message(event, team_id, bot_user_id),
                   f"{event.get('type')} {event.get('channel')}/{event.get('ts')}")

    async def handle_message(self, event: dict[str, Any], team_id: str,
                             bot_user_id: str) -> None:
        message = translate(event, team_id, bot_user_id)
        if message is None:
            self.outcomes["ignored"] += 1
            return
        if not await self.router.accepts(message.arrival, message.inbound.key):
            self.outcomes["not_routed"] += 1
            return
        outbox = SlackOutbox(self.client, message.inbound.channel, message.reply_thread_ts)
        outcome = await self.bot.handle(message.inbound, outbox)
        self.outcomes[outcome] += 1


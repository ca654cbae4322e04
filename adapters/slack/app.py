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
from dataclasses import replace
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.slack.cards import command_response
from adapters.slack.desk import reply_thread
from adapters.slack.directory import SlackDirectory
from adapters.slack.events import DM_THREAD, PLATFORM, translate
from adapters.slack.outbox import SlackOutbox
from bot.admin import AdminCommands
from bot.admin_views import CommandReply, error
from bot.interactions import Interactions
from bot.models import ConversationKey
from bot.routing import MessageRouter
from bot.service import SupportBot

log = logging.getLogger(__name__)

ACTION_IDS = re.compile(r"^sb_")
SLASH_COMMAND = "/support"

class SlackAdapter:
    def __init__(self, bot: SupportBot, client: AsyncWebClient, router: MessageRouter,
                 signing_secret: str = "", admin: AdminCommands | None = None,
                 interactions: Interactions | None = None,
                 directory: SlackDirectory | None = None,
                 command: str = SLASH_COMMAND) -> None:
        self.bot = bot
        self.client = client
        self.router = router
        self.admin = admin
        self.interactions = interactions
        self.directory = directory or SlackDirectory(client)
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
        self.app.command(command)(self._on_command)
        self.app.action(ACTION_IDS)(self._on_action)

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
        inbound = replace(message.inbound, user_name=await self.directory.display_name(
            message.inbound.user))
        outbox = SlackOutbox(self.client, inbound.channel, message.reply_thread_ts)
        outcome = await self.bot.handle(inbound, outbox)
        self.outcomes[outcome] += 1

    # ---- /support -------------------------------------------------------------------------

    async def _on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()  # an empty ack: the answer follows through response_url
        self.spawn(self.handle_command(body), f"{self.command} by {body.get('user_id')}")

    async def handle_command(self, body: dict[str, Any]) -> None:
        if self.admin is None:
            reply = error("Admin commands are not set up in this process.")
        else:
            caller = await self.directory.caller(str(body.get("user_id", "")),
                                                 str(body.get("team_id", "")))
            reply = await self.admin.handle(caller, str(body.get("text") or ""),
                                            channel=str(body.get("channel_id") or ""))
        await self._respond(str(body.get("response_url") or ""), reply)

    # ---- buttons --------------------------------------------------------------------------

    async def _on_action(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        self.spawn(self.handle_action(body), f"button by {body.get('user', {}).get('id')}")

    async def handle_action(self, body: dict[str, Any]) -> None:
        actions: list[dict[str, Any]] = body.get("actions") or []
        if not actions:
            return
        action = actions[0]
        if self.interactions is None:
            reply = error("Buttons are not set up in this process.")
        else:
            user: dict[str, Any] = body.get("user") or {}
            team_id = str((body.get("team") or {}).get("id") or user.get("team_id") or "")
            caller = await self.directory.caller(str(user.get("id", "")), team_id)
            key = conversation_of(body, team_id)
            outbox = SlackOutbox(self.client, key.channel, reply_thread(key)) if key else None
            reply = await self.interactions.handle(
                caller, str(action.get("action_id", "")), str(action.get("value") or ""),
                conversation=key, outbox=outbox)
        await self._respond(str(body.get("response_url") or ""), reply)

    async def _respond(self, response_url: str, reply: CommandReply) -> None:
        if not response_url:
            log.warning("slack: no response_url to answer with: %s", reply.text)
            return
        await AsyncWebhookClient(response_url).send_dict(command_response(reply))


def conversation_of(body: dict[str, Any], team_id: str) -> ConversationKey | None:
    """The customer conversation a pressed message belongs to (its thread, or the DM), the
    same key events.translate gives the customer's messages there."""
    channel = str((body.get("channel") or {}).get("id") or "")
    message: dict[str, Any] = body.get("message") or {}
    container: dict[str, Any] = body.get("container") or {}
    thread = str(message.get("thread_ts") or container.get("thread_ts") or "")
    if not channel or not team_id:
        return None
    if not thread:  # a top-level message: only the bot's DM replies are posted that way
        if not channel.startswith("D"):
            return None
        thread = DM_THREAD
    return ConversationKey(PLATFORM, team_id, channel, thread)


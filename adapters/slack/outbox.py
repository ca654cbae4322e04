"""SlackOutbox: the bot's Outbox bound to one Slack thread (or DM).

A reply may need several messages (see blocks.py); the outbox remembers which messages make
up each reply it posted so an edit (the next streaming step, the final answer) updates them
in place, posts pages that became necessary and deletes pages no longer needed
(bot.chunks.plan_update). Pages that did not change are not sent again, which keeps every
message within Slack's edit rate.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import Page, render_reply
from bot.chunks import plan_update
from bot.models import Reply


class SlackOutbox:
    def __init__(self, client: AsyncWebClient, channel: str, thread_ts: str | None) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts  # None: post at the top level (a DM without a thread)
        self._ids: dict[str, list[str]] = {}  # first message ts -> ts of every page
        self._shown: dict[str, list[Page]] = {}  # first message ts -> what its pages show

    async def post(self, reply: Reply) -> str:
        pages = render_reply(reply)
        ids = [await self._post_page(page) for page in pages]
        self._ids[ids[0]] = ids
        self._shown[ids[0]] = pages
        return ids[0]

    async def edit(self, message_id: str, reply: Reply) -> None:
        wanted = render_reply(reply)
        ids = self._ids.setdefault(message_id, [message_id])
        # A message posted by another process (or before a restart): assume one page, and
        # rewrite it since we cannot know what it shows.
        shown = self._shown.get(message_id) or [Page("", "")]
        plan = plan_update(shown, wanted)
        for index, page in plan.edits:
            await self.client.chat_update(channel=self.channel, ts=ids[index],
                                          **page.as_kwargs())
        for page in plan.posts:
            ids.append(await self._post_page(page))
        for index in sorted(plan.deletes, reverse=True):
            await self.client.chat_delete(channel=self.channel, ts=ids[index])
            del ids[index]
        self._shown[message_id] = wanted

    async def _post_page(self, page: Page) -> str:
        kwargs: dict[str, Any] = page.as_kwargs()
        if self.thread_ts is not None:
            kwargs["thread_ts"] = self.thread_ts
        response = await self.client.chat_postMessage(channel=self.channel, **kwargs)
        return str(response["ts"])

"""Console adapter: a terminal conversation with the bot, interactive or from a script.

One console session is one conversation (platform "console"). Streaming partials are not
printed line by line; the final reply is, with its citations.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Iterable
from typing import TextIO

from bot.models import Inbound, Reply, ReplyKind
from bot.service import SupportBot

PLATFORM = "console"


def render(reply: Reply) -> str:
    lines = [reply.text]
    for c in reply.citations:
        lines.append(f"  [source: {c.title}{' <' + c.url + '>' if c.url else ''}]")
    return "\n".join(lines)


class ConsoleOutbox:
    """Prints each message once it is final; partial (streaming) edits are not echoed."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._ids = itertools.count(1)

    async def post(self, reply: Reply) -> str:
        message_id = str(next(self._ids))
        self._show(reply)
        return message_id

    async def edit(self, message_id: str, reply: Reply) -> None:
        self._show(reply)

    def _show(self, reply: Reply) -> None:
        if reply.kind is ReplyKind.PARTIAL:
            return
        prefix = "bot> "
        body = render(reply).replace("\n", "\n" + " " * len(prefix))
        print(prefix + body, file=self._out, flush=True)


class ConsoleSession:
    def __init__(self, bot: SupportBot, out: TextIO = sys.stdout, user: str = "customer",
                 thread: str = "session") -> None:
        self.bot = bot
        self.out = out
        self.user = user
        self.thread = thread
        self._events = itertools.count(1)

    async def say(self, text: str) -> None:
        inbound = Inbound(platform=PLATFORM, workspace="local", channel="console",
                          thread=self.thread, user=self.user, text=text,
                          event_id=f"{self.thread}-{next(self._events)}", user_name=self.user)
        await self.bot.handle(inbound, ConsoleOutbox(self.out))

    async def run_script(self, lines: Iterable[str]) -> None:
        for raw in lines:
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            print(f"{self.user}> {line}", file=self.out, flush=True)
            await self.say(line)

    async def run_interactive(self) -> None:
        print("Type a question (Ctrl-D to quit).", file=self.out, flush=True)
        while True:
            try:
                line = await asyncio.to_thread(input, f"{self.user}> ")
            except EOFError:
                print(file=self.out)
                return
            if line.strip():
                await self.say(line)

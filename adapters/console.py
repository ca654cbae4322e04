"""Console adapter: a terminal conversation with the bot, interactive or from a script.

One console session is one conversation (platform "console"). Streaming partials are not
printed line by line; the final reply is, with its citations.

Both sides can be played from one script:
  a plain line             the customer says it
  agent: claim|resolve [note]|handback
                           an agent acts on the conversation's ticket (same code path as
                           the `/support` commands and the card buttons)
  agent: <text>            the agent replies in the customer's thread
  /support <command>       an admin command (the console user is an admin)
Ticket cards and reminders for agents are printed with an `[agents]` prefix.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Iterable
from typing import TextIO

from bot.admin import AdminCommands
from bot.admin_views import CommandReply
from bot.authz import Caller
from bot.models import ConversationKey, Inbound, Reply, ReplyKind
from bot.service import SupportBot
from bot.tickets import TicketCard

PLATFORM = "console"
AGENT = Caller(PLATFORM, "agent", "Sam (agent)")
ADMIN = Caller(PLATFORM, "admin", "admin")
CONSOLE_STAFF = (f"{PLATFORM}:{AGENT.user_id}", f"{PLATFORM}:{ADMIN.user_id}")
AGENT_ACTIONS = ("claim", "resolve", "handback")


def render(reply: Reply) -> str:
    lines = [reply.text]
    for c in reply.citations:
        lines.append(f"  [source: {c.title}{' <' + c.url + '>' if c.url else ''}]")
    return "\n".join(lines)


def _print_block(out: TextIO, prefix: str, text: str) -> None:
    print(prefix + text.replace("\n", "\n" + " " * len(prefix)), file=out, flush=True)


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
        _print_block(self._out, "bot> ", render(reply))


def render_card(card: TicketCard) -> list[str]:
    lines = [card.title]
    lines += [f"  | {line}" for line in card.lines]
    lines += ["  " + "  ".join(f"{k}: {v}" for k, v in card.fields)]
    if card.buttons:
        lines.append("  " + " ".join(f"[{b.label}]" for b in card.buttons))
    return lines


class ConsoleDesk:
    """The agents' channel, printed to the same terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._ids = itertools.count(1)

    def _agents(self, lines: Iterable[str]) -> None:
        for line in lines:
            print(f"[agents] {line}", file=self.out, flush=True)

    async def post_card(self, channel: str, card: TicketCard) -> str:
        self._agents(render_card(card))
        return f"card{next(self._ids)}"

    async def update_card(self, card_id: str, card: TicketCard) -> None:
        status = dict(card.fields).get("Status", str(card.state))
        self._agents([f"Ticket {card.ticket_id}: {status}"])

    async def notify_agents(self, channel: str, text: str, card_id: str = "") -> None:
        self._agents([text])

    def customer_outbox(self, key: ConversationKey) -> ConsoleOutbox:
        return ConsoleOutbox(self.out)

    async def link(self, key: ConversationKey) -> str:
        return f"console://{key.thread}"


class ConsoleSession:
    def __init__(self, bot: SupportBot, out: TextIO = sys.stdout, user: str = "customer",
                 thread: str = "session", admin: AdminCommands | None = None) -> None:
        self.bot = bot
        self.out = out
        self.user = user
        self.thread = thread
        self.admin = admin
        self._events = itertools.count(1)

    @property
    def key(self) -> ConversationKey:
        return ConversationKey(PLATFORM, "local", "console", self.thread)

    async def say(self, text: str, user: str = "", user_name: str = "") -> None:
        inbound = Inbound(platform=PLATFORM, workspace="local", channel="console",
                          thread=self.thread, user=user or self.user, text=text,
                          event_id=f"{self.thread}-{next(self._events)}",
                          user_name=user_name or user or self.user)
        await self.bot.handle(inbound, ConsoleOutbox(self.out))

    def _show(self, reply: CommandReply) -> None:
        _print_block(self.out, "support> ", reply.text)

    async def command(self, text: str, caller: Caller = ADMIN) -> None:
        if self.admin is None:
            self._show(CommandReply("/support commands are not available here.", ok=False))
            return
        self._show(await self.admin.handle(caller, text, channel="console"))

    async def agent(self, text: str) -> None:
        """An agent line: an action on this conversation's ticket, or a reply to the customer."""
        word, _, rest = text.strip().partition(" ")
        if word.lower() in AGENT_ACTIONS:
            ticket = (await self.bot.store.load(self.key, 0)).fields.get("ticket", "")
            if not ticket:
                self._show(CommandReply("This conversation has no open ticket.", ok=False))
                return
            await self.command(f"{word.lower()} {ticket} {rest}".strip(), AGENT)
            return
        print(f"agent> {text}", file=self.out, flush=True)
        await self.say(text, user=AGENT.user_id, user_name=AGENT.name)

    async def line(self, text: str) -> None:
        """One script or terminal line, routed by its prefix."""
        stripped = text.strip()
        if stripped.lower().startswith("agent:"):
            await self.agent(stripped[len("agent:"):].strip())
        elif stripped.startswith("/support"):
            print(f"admin> {stripped}", file=self.out, flush=True)
            await self.command(stripped[len("/support"):])
        else:
            await self.say(text)

    async def run_script(self, lines: Iterable[str]) -> None:
        for raw in lines:
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not line.strip().lower().startswith(("agent:", "/support")):
                print(f"{self.user}> {line}", file=self.out, flush=True)
            await self.line(line)

    async def run_interactive(self) -> None:
        print("Type a question (Ctrl-D to quit). 'agent: ...' acts as an agent, "
              "'/support help' lists admin commands.", file=self.out, flush=True)
        while True:
            try:
                line = await asyncio.to_thread(input, f"{self.user}> ")
            except EOFError:
                print(file=self.out)
                return
            if line.strip():
                await self.line(line)

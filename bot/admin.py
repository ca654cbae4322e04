"""`/support` admin commands: one platform-neutral handler, parse -> authorize -> execute.

Adapters call ``AdminCommands.handle(caller, text, channel)`` with the text after
``/support`` and render the returned ``CommandReply`` (ephemeral). The handler never raises
on input: bad arguments get the usage line, unknown ids a clear error, and nothing changes
on either. Authorization is decided from the command alone, before arguments are read, so
a refused caller learns nothing and no command body runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Protocol, runtime_checkable

from bot.admin_views import CommandReply, ReplySection, error
from bot.analytics import Analytics, report_lines
from bot.authz import Authorizer, Caller, Role
from bot.handoff import Handoff
from bot.live_config import CLEARABLE, SETTABLE, ConfigError, LiveConfig
from bot.ports import Clock, ConversationStore, SystemClock
from bot.tickets import Ticket

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KbHit:
    article_id: str
    title: str
    score: float = 0.0


class KnowledgeAdmin(Protocol):
    """What `/support kb` needs from the knowledge base (bot/admin_kb.py has one over the
    Markdown KB; a hybrid retriever can offer its own)."""

    def list_articles(self) -> Sequence[KbHit]: ...

    async def search(self, query: str, k: int = 5) -> Sequence[KbHit]: ...

    async def reload(self) -> str:
        """Re-read the knowledge base; returns a one-line summary (raises on failure)."""
        ...


@runtime_checkable
class EngineHealth(Protocol):
    async def health(self) -> Mapping[str, str]:
        """e.g. {"engine": "ok", "queue": "3 waiting"}."""
        ...


@dataclass(frozen=True)
class Command:
    name: str  # "kb search", "claim", ...
    role: Role
    usage: str
    summary: str


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("help", Role.ANYONE, "/support help", "this list"),
    Command("status", Role.AGENT, "/support status", "engine, Redis, open tickets, version"),
    Command("stats", Role.AGENT, "/support stats [days]", "support figures (default 7 days)"),
    Command("tickets", Role.AGENT, "/support tickets [open|mine]", "active tickets"),
    Command("claim", Role.AGENT, "/support claim <id>", "take a ticket"),
    Command("resolve", Role.AGENT, "/support resolve <id> [note]", "close a ticket"),
    Command("handback", Role.AGENT, "/support handback <id>", "give the conversation back "
                                                              "to the bot"),
    Command("kb list", Role.AGENT, "/support kb list", "knowledge-base articles"),
    Command("kb search", Role.AGENT, "/support kb search <query>", "search the knowledge base"),
    Command("kb reload", Role.ADMIN, "/support kb reload", "re-read the knowledge base"),
    Command("pause", Role.ADMIN, "/support pause [channel|all]", "bot silent in a channel"),
    Command("resume", Role.ADMIN, "/support resume [channel|all]", "bot answers again"),
    Command("config get", Role.AGENT, "/support config get [key]", "live settings"),
    Command("config set", Role.ADMIN, "/support config set <key> <value>",
            "change a live setting for every process"),
)}
GROUPS = {"kb": "/support kb list|search <query>|reload",
          "config": "/support config get [key] | set <key> <value>"}


@dataclass(frozen=True)
class Parsed:
    command: Command | None  # None: unknown command (or a group without a valid sub)
    args: list[str]  # whitespace-separated words after the command
    rest: str  # the raw text after the command, for notes, queries and values
    problem: str = ""  # shown instead of running anything


def _split_first(text: str) -> tuple[str, str]:
    parts = text.strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) > 1 else ""


def parse(text: str) -> Parsed:
    """Never raises: anything unreadable becomes a Parsed with a problem to show."""
    word, rest = _split_first(text)
    word = word.lower().lstrip("/")
    if word == "support":  # "/support /support help" or a pasted command line
        word, rest = _split_first(rest)
        word = word.lower()
    if not word:
        return Parsed(COMMANDS["help"], [], "")
    if word in GROUPS:
        sub, rest = _split_first(rest)
        command = COMMANDS.get(f"{word} {sub.lower()}")
        if command is None:
            return Parsed(None, [], rest, f"Usage: {GROUPS[word]}")
        return Parsed(command, rest.split(), rest.strip())
    command = COMMANDS.get(word)
    if command is None:
        return Parsed(None, [], rest, f"Unknown command {word[:40]!r}. Try /support help.")
    return Parsed(command, rest.split(), rest.strip())


Handler = Callable[[Caller, Parsed, str], Awaitable[CommandReply]]


class UsageError(Exception):
    """Bad arguments: reply with the command's usage line."""


def _usage(command: Command) -> CommandReply:
    return error(f"Usage: {command.usage}")


def _ticket_line(t: Ticket) -> str:
    who = f", {t.agent_name or t.agent}" if t.agent else ""
    return (f"{t.id}  {t.state}{who}  {t.customer_name or t.customer}  ({t.reason})  "
            f"{t.link or t.conversation.id}")


class AdminCommands:
    def __init__(self, authorizer: Authorizer, handoff: Handoff, live: LiveConfig,
                 analytics: Analytics, store: ConversationStore,
                 kb: KnowledgeAdmin | None = None, engine: EngineHealth | None = None,
                 clock: Clock | None = None) -> None:
        self.authorizer = authorizer
        self.handoff = handoff
        self.live = live
        self.analytics = analytics
        self.store = store
        self.kb = kb
        self.engine = engine
        self.clock = clock or SystemClock()
        self._handlers: dict[str, Handler] = {
            "help": self._help, "status": self._status, "stats": self._stats,
            "tickets": self._tickets, "claim": self._claim, "resolve": self._resolve,
            "handback": self._handback, "kb list": self._kb_list,
            "kb search": self._kb_search, "kb reload": self._kb_reload,
            "pause": self._pause, "resume": self._resume,
            "config get": self._config_get, "config set": self._config_set,
        }

    async def handle(self, caller: Caller, text: str, channel: str = "") -> CommandReply:
        """Answer one `/support` command. `channel` is where it was typed (for pause)."""
        parsed = parse(text)
        if parsed.command is None:
            return error(parsed.problem)
        decision = self.authorizer.check(caller, parsed.command.role)
        if not decision.allowed:
            return error(decision.message)
        try:
            return await self._handlers[parsed.command.name](caller, parsed, channel)
        except UsageError:
            return _usage(parsed.command)
        except Exception:  # a command must always answer; details go to the log
            log.exception("/support %s failed", parsed.command.name)
            return error(f"Sorry, `{parsed.command.name}` failed; the error is in the bot's "
                         "log. Nothing was changed by this reply.")

    # ---- commands ---------------------------------------------------------------------------

    async def _help(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        role = self.authorizer.role_of(caller)
        usable = [c for c in COMMANDS.values() if c.role <= role]
        lines = tuple(f"{c.usage} — {c.summary}" for c in usable)
        return CommandReply("\n".join(lines), (ReplySection("supportbot commands", lines),))

    async def _status(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        if p.args:
            raise UsageError
        fields: list[tuple[str, str]] = [
            ("Redis", "ok" if await self.store.ping() else "NOT REACHABLE")]
        if self.engine is not None:
            try:
                fields += list((await self.engine.health()).items())
            except Exception as exc:
                fields.append(("engine", f"unavailable ({type(exc).__name__})"))
        active = await self.handoff.active()
        open_n = sum(1 for t in active if t.state == "open")
        fields.append(("tickets", f"{open_n} open, {len(active) - open_n} claimed"))
        cfg = await self.live.snapshot()
        if cfg.paused_channels:
            fields.append(("paused", ", ".join(sorted(cfg.paused_channels))))
        try:
            version = metadata.version("supportbot")
        except metadata.PackageNotFoundError:
            version = "unknown"
        fields.append(("version", version))
        text = "\n".join(f"{k}: {v}" for k, v in fields)
        return CommandReply(text, (ReplySection("status", fields=tuple(fields)),))

    async def _stats(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        if len(p.args) > 1 or (p.args and not p.args[0].isdigit()):
            raise UsageError
        days = int(p.args[0]) if p.args else 7
        if not 1 <= days <= 366:
            return error("days must be between 1 and 366.")
        report = await self.analytics.report(days, self.clock.now())
        lines = tuple(report_lines(report))
        return CommandReply("\n".join(lines), (ReplySection(f"stats, {days} days", lines),))

    async def _tickets(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        which = p.args[0].lower() if p.args else "open"
        if len(p.args) > 1 or which not in ("open", "mine"):
            raise UsageError
        tickets = await self.handoff.active(caller.user_id if which == "mine" else "")
        if not tickets:
            return CommandReply("No active tickets." if which == "open"
                                else "You have no active tickets.")
        lines = tuple(_ticket_line(t) for t in tickets)
        return CommandReply("\n".join(lines), (ReplySection(f"tickets ({which})", lines),))

    def _one_id(self, p: Parsed, allow_note: bool = False) -> tuple[str, str]:
        if not p.args or (len(p.args) > 1 and not allow_note):
            raise UsageError
        note = p.rest[len(p.args[0]):].strip()
        return p.args[0], note

    async def _claim(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        ticket_id, _ = self._one_id(p)
        result = await self.handoff.claim(ticket_id, caller.user_id, caller.name)
        return CommandReply(result.message, ok=result.ok)

    async def _resolve(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        ticket_id, note = self._one_id(p, allow_note=True)
        result = await self.handoff.resolve(ticket_id, caller.name, note)
        return CommandReply(result.message, ok=result.ok)

    async def _handback(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        ticket_id, _ = self._one_id(p)
        result = await self.handoff.hand_back(ticket_id, caller.name)
        return CommandReply(result.message, ok=result.ok)

    def _need_kb(self) -> KnowledgeAdmin:
        if self.kb is None:
            raise RuntimeError("no knowledge base is wired into this process")
        return self.kb

    async def _kb_list(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        if p.args:
            raise UsageError
        articles = self._need_kb().list_articles()
        lines = tuple(f"{a.article_id} — {a.title}" for a in articles)
        return CommandReply(f"{len(lines)} articles:\n" + "\n".join(lines),
                            (ReplySection(f"{len(lines)} articles", lines),))

    async def _kb_search(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        if not p.rest:
            raise UsageError
        hits = await self._need_kb().search(p.rest, 5)
        if not hits:
            return CommandReply(f"No article matches {p.rest[:100]!r}.")
        lines = tuple(f"{h.article_id} — {h.title} ({h.score:.2f})" for h in hits)
        return CommandReply("\n".join(lines), (ReplySection("matches", lines),))

    async def _kb_reload(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        if p.args:
            raise UsageError
        try:
            summary = await self._need_kb().reload()
        except Exception as exc:  # the old knowledge base stays in use
            return error(f"Reload failed, still using the previous knowledge base: {exc}")
        return CommandReply(f"Knowledge base reloaded: {summary}")

    def _channel_arg(self, p: Parsed, channel: str) -> str:
        if len(p.args) > 1:
            raise UsageError
        target = p.args[0] if p.args else (channel or "all")
        target = target.strip("<#>").split("|")[0]  # Slack/Discord channel mentions
        if not target or "," in target:
            raise UsageError
        return "*" if target.lower() in ("all", "*") else target

    async def _pause(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        target = self._channel_arg(p, channel)
        await self.live.set_paused(target, True)
        where = "every channel" if target == "*" else target
        return CommandReply(f"Paused: the bot stays silent in {where} (messages are still "
                            f"recorded). `/support resume` to undo.")

    async def _resume(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        target = self._channel_arg(p, channel)
        paused = await self.live.set_paused(target, False)
        where = "every channel" if target == "*" else target
        still = f" Still paused: {', '.join(sorted(paused))}." if paused else ""
        return CommandReply(f"Resumed in {where}.{still}")

    async def _config_get(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        if len(p.args) > 1:
            raise UsageError
        values = (await self.live.fresh()).as_text()
        if p.args:
            name = p.args[0]
            if name not in values:
                return error(f"Unknown config key {name!r}. Keys: {', '.join(values)}")
            return CommandReply(f"{name} = {values[name]!r}")
        pairs = tuple((k, v or "(empty)") for k, v in values.items())
        return CommandReply("\n".join(f"{k} = {v}" for k, v in pairs),
                            (ReplySection("live config", fields=pairs),))

    async def _config_set(self, caller: Caller, p: Parsed, channel: str) -> CommandReply:
        if not p.args:
            raise UsageError
        name = p.args[0]
        value = p.rest[len(name):].strip().strip('"').strip("'")
        if not value and name not in CLEARABLE:
            raise UsageError
        try:
            stored = await self.live.set(name, value)
        except ConfigError as exc:
            return error(f"{exc}. Nothing was changed.")
        log.info("config %s set to %r by %s", name, stored, caller.user_id)
        return CommandReply(f"{name} = {stored!r} (every process sees it within a few "
                            f"seconds). {SETTABLE[name][1]}")

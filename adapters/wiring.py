"""Build the bot's parts from Settings: store, knowledge base, answerer, SupportBot."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

from adapters.cli_kb import lazy_retriever
from bot.admin import AdminCommands, EngineHealth
from bot.admin_kb import MarkdownKbAdmin
from bot.admin_store import KeyValue, MemoryKeyValue, RedisKeyValue
from bot.analytics import Analytics, Embedder
from bot.answerer import GroundedAnswerer
from bot.authz import AuthConfig, Authorizer
from bot.feedback import Feedback
from bot.handoff import AgentDesk, Handoff
from bot.interactions import Interactions
from bot.kb_import import load_knowledge
from bot.keys import Keys
from bot.knowledge import KnowledgeBase
from bot.live_config import ConfigSnapshot, LiveConfig
from bot.ports import LLM, Clock, ConversationStore, SystemClock
from bot.service import BotPolicy, SupportBot
from bot.settings import Settings
from bot.store_memory import MemoryStore
from bot.store_redis import RedisStore
from bot.sweeper import Sweeper
from bot.tickets import TicketStore
from bot.tickets_memory import MemoryTicketStore
from bot.tickets_redis import RedisTicketStore

log = logging.getLogger(__name__)


def build_store(settings: Settings) -> ConversationStore:
    if settings.redis_url:
        return RedisStore.from_url(settings.redis_url, Keys(settings.redis_prefix))
    log.info("no SUPPORTBOT_REDIS_URL: using the in-memory store (single process only)")
    return MemoryStore()


def build_answerer(settings: Settings, kb: KnowledgeBase,
                   llm: LLM | None = None) -> GroundedAnswerer:
    """Hybrid retrieval over the KB's index (refreshed on first use: only changed articles
    are embedded) and, when an LLM is given, grounded generation; else the article text."""
    return GroundedAnswerer(lazy_retriever(settings, kb, settings.kb_dir), llm,
                            threshold=settings.answer_threshold)


def load_kb(settings: Settings) -> KnowledgeBase:
    kb = load_knowledge(settings.kb_dir)
    for problem in kb.problems:
        log.warning("knowledge base: skipped %s", problem)
    return kb


def build_bot(settings: Settings) -> SupportBot:
    answerer = build_answerer(settings, load_kb(settings))
    policy = BotPolicy(dedup_ttl_s=settings.dedup_ttl_s, rate_limit=settings.rate_limit,
                       rate_window_s=settings.rate_window_s,
                       history_turns=settings.history_turns)
    return SupportBot(build_store(settings), answerer, policy)


# ---- the whole platform-neutral support stack (handoff, admin commands, buttons) ----------


@dataclass
class Support:
    """Everything platform-neutral an adapter process routes into (see bot/handoff.py)."""

    bot: SupportBot
    handoff: Handoff
    tickets: TicketStore
    live: LiveConfig
    analytics: Analytics
    feedback: Feedback
    admin: AdminCommands
    interactions: Interactions
    sweeper: Sweeper

    async def close(self) -> None:
        await self.bot.store.close()


def auth_config(settings: Settings, extra_admins: Sequence[str] = ()) -> AuthConfig:
    return AuthConfig.build(
        admin_users=[*settings.admin_users, *extra_admins], agent_users=settings.agent_users,
        admin_groups=[*settings.admin_groups, *settings.discord_admin_roles],
        # The Discord role pinged on ticket cards is the agents' role: its members are agents.
        agent_groups=[*settings.agent_groups,
                      *([settings.discord_agent_role] if settings.discord_agent_role else [])],
        admin_permissions=("administrator", "manage_guild"))


def live_defaults(settings: Settings) -> ConfigSnapshot:
    return ConfigSnapshot(
        answer_threshold=settings.answer_threshold,
        support_channels=tuple(settings.support_channels), agent_channel=settings.agent_channel,
        agent_channels=tuple((platform, channel) for platform, channel in (
            ("slack", settings.slack_agent_channel),
            ("discord", settings.discord_agent_channel)) if channel),
        business_hours=settings.business_hours, rate_limit=settings.rate_limit,
        rate_window_s=settings.rate_window_s, claim_timeout_min=settings.claim_timeout_min,
        max_reminders=settings.max_reminders)


def build_support(settings: Settings, desks: Mapping[str, AgentDesk], llm: LLM | None = None,
                  embedder: Embedder | None = None, extra_admins: Sequence[str] = (),
                  clock: Clock | None = None) -> Support:
    """Wire store, tickets, live config, analytics, handoff, commands and buttons.

    desks: one AgentDesk per platform name ("slack", "discord", "console"). llm writes the
    ticket summaries (None: the last messages are shown instead). extra_admins: user ids
    that are admins in this process (the console user).

    Inside `one_support_stack(...)` every call returns that context's one stack instead and
    only adds `desks` to it (see there).
    """
    shared = _SHARED.get()
    if shared is not None:
        return shared.join(settings, desks, embedder, extra_admins, clock)
    return _build_support(settings, desks, llm, embedder, extra_admins, clock)


def _build_support(settings: Settings, desks: Mapping[str, AgentDesk], llm: LLM | None,
                   embedder: Embedder | None, extra_admins: Sequence[str],
                   clock: Clock | None) -> Support:
    clock = clock or SystemClock()
    keys = Keys(settings.redis_prefix)
    store = build_store(settings)
    tickets: TicketStore
    kv: KeyValue
    if isinstance(store, RedisStore):
        tickets, kv = RedisTicketStore(store.client, keys), RedisKeyValue(store.client)
    else:
        tickets, kv = MemoryTicketStore(clock), MemoryKeyValue()
    live = LiveConfig(kv, keys, live_defaults(settings))
    analytics = Analytics(kv, keys, embedder)
    handoff = Handoff(tickets, store, desks, live, llm, clock, analytics,
                      transcript_ttl_s=settings.transcript_ttl_days * 86400)
    kb = load_kb(settings)
    policy = BotPolicy(dedup_ttl_s=settings.dedup_ttl_s, rate_limit=settings.rate_limit,
                       rate_window_s=settings.rate_window_s,
                       history_turns=settings.history_turns)
    bot = SupportBot(store, build_answerer(settings, kb, llm),
                     policy, clock, handoff=handoff, live=live, analytics=analytics)

    def use_new_kb(new_kb: KnowledgeBase) -> None:
        bot.answerer = build_answerer(settings, new_kb, llm)

    kb_admin = MarkdownKbAdmin(settings.kb_dir, kb, use_new_kb)
    authorizer = Authorizer(auth_config(settings, extra_admins))
    feedback = Feedback(kv, keys, analytics)
    return Support(
        bot=bot, handoff=handoff, tickets=tickets, live=live, analytics=analytics,
        feedback=feedback,
        admin=AdminCommands(authorizer, handoff, live, analytics, store, kb_admin,
                            engine=llm if isinstance(llm, EngineHealth) else None, clock=clock),
        interactions=Interactions(authorizer, handoff, feedback, store, clock),
        sweeper=Sweeper(handoff, tickets))


# ---- one stack for several adapters in one process (`supportbot run`) ---------------------
#
# Each adapter's process builder (adapters/slack/process.build_slack,
# adapters/discordbot/app.build_discord) calls build_support itself. Rather than give every
# builder a second way in, `supportbot run` opens this context and calls the builders
# unchanged: they all get the same Support (one store, one handoff, one set of tickets and
# live config), and each one's desks are added to the handoff's.


class JoinedDesks(Mapping[str, AgentDesk]):
    """The desks of every adapter sharing one stack. Holds the callers' own mappings, not
    copies: a builder may fill its desk in after build_support returns (Discord's desk needs
    the client, which needs the stack first)."""

    def __init__(self) -> None:
        self.parts: list[Mapping[str, AgentDesk]] = []

    def __getitem__(self, platform: str) -> AgentDesk:
        for part in self.parts:
            if platform in part:
                return part[platform]
        raise KeyError(platform)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for part in self.parts for name in part))

    def __len__(self) -> int:
        return len(list(iter(self)))


@dataclass
class _SharedStack:
    settings: Settings
    llm: LLM | None
    desks: JoinedDesks = field(default_factory=JoinedDesks)
    support: Support | None = None

    def join(self, settings: Settings, desks: Mapping[str, AgentDesk],
             embedder: Embedder | None, extra_admins: Sequence[str],
             clock: Clock | None) -> Support:
        if settings != self.settings:  # two configurations cannot share one store
            raise ValueError("one_support_stack: every adapter must use the same Settings")
        self.desks.parts.append(desks)
        if self.support is None:  # the first caller's embedder/admins/clock build it
            self.support = _build_support(self.settings, self.desks, self.llm, embedder,
                                          extra_admins, clock)
        return self.support


_SHARED: ContextVar[_SharedStack | None] = ContextVar("supportbot_shared_stack", default=None)


@contextlib.contextmanager
def one_support_stack(settings: Settings, llm: LLM | None = None) -> Iterator[None]:
    """Within this block build_support builds the stack once (with this `llm`, the one
    engine client of the process) and hands it to every later caller. Whoever opens the
    block runs its sweeper once and closes it once."""
    token = _SHARED.set(_SharedStack(settings, llm))
    try:
        yield
    finally:
        _SHARED.reset(token)

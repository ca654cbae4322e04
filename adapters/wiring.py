"""Build the bot's parts from Settings: store, knowledge base, answerer, SupportBot."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.admin import AdminCommands
from bot.admin_kb import MarkdownKbAdmin
from bot.admin_store import KeyValue, MemoryKeyValue, RedisKeyValue
from bot.analytics import Analytics, Embedder
from bot.answer_kb import KnowledgeBaseAnswerer
from bot.authz import AuthConfig, Authorizer
from bot.feedback import Feedback
from bot.handoff import AgentDesk, Handoff
from bot.interactions import Interactions
from bot.keys import Keys
from bot.knowledge import KnowledgeBase, load_markdown_dir
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


def build_bot(settings: Settings) -> SupportBot:
    kb = load_markdown_dir(settings.kb_dir)
    for problem in kb.problems:
        log.warning("knowledge base: skipped %s", problem)
    answerer = KnowledgeBaseAnswerer(kb, min_coverage=settings.answer_threshold)
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
    """
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
    kb = load_markdown_dir(settings.kb_dir)
    for problem in kb.problems:
        log.warning("knowledge base: skipped %s", problem)
    policy = BotPolicy(dedup_ttl_s=settings.dedup_ttl_s, rate_limit=settings.rate_limit,
                       rate_window_s=settings.rate_window_s,
                       history_turns=settings.history_turns)
    bot = SupportBot(store, KnowledgeBaseAnswerer(kb, min_coverage=settings.answer_threshold),
                     policy, clock, handoff=handoff, live=live, analytics=analytics)

    def use_new_kb(new_kb: KnowledgeBase) -> None:
        bot.answerer = KnowledgeBaseAnswerer(new_kb, min_coverage=settings.answer_threshold)

    kb_admin = MarkdownKbAdmin(settings.kb_dir, kb, use_new_kb)
    authorizer = Authorizer(auth_config(settings, extra_admins))
    feedback = Feedback(kv, keys, analytics)
    return Support(
        bot=bot, handoff=handoff, tickets=tickets, live=live, analytics=analytics,
        feedback=feedback,
        admin=AdminCommands(authorizer, handoff, live, analytics, store, kb_admin, clock=clock),
        interactions=Interactions(authorizer, handoff, feedback, store, clock),
        sweeper=Sweeper(handoff, tickets))

"""Build the bot's parts from Settings: store, knowledge base, answerer, SupportBot."""

from __future__ import annotations

import logging

from bot.answer_kb import KnowledgeBaseAnswerer
from bot.keys import Keys
from bot.knowledge import load_markdown_dir
from bot.ports import ConversationStore
from bot.service import BotPolicy, SupportBot
from bot.settings import Settings
from bot.store_memory import MemoryStore
from bot.store_redis import RedisStore

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

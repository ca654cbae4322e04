"""Pick the engine client from settings: ``SUPPORTBOT_LLM=inprocess|redis|http``.

    inprocess  load the model here and batch every conversation of this process (default)
    redis      send requests to shared `supportbot engine` workers through Redis
               (SUPPORTBOT_LLM_URL, else SUPPORTBOT_REDIS_URL; keys under SUPPORTBOT_REDIS_PREFIX)
    http       any OpenAI-compatible server at SUPPORTBOT_LLM_URL (ours, vLLM, llama.cpp)

Every client has ``close()``; whoever builds one closes it on shutdown.
"""

from __future__ import annotations

from typing import Protocol

from bot.ports import LLM
from bot.settings import Settings


class ClosableLLM(LLM, Protocol):
    async def close(self) -> None: ...


def build_llm(settings: Settings) -> ClosableLLM:
    if settings.llm == "redis":
        from engine.clients import RedisLLM

        return RedisLLM.from_url(settings.llm_url or settings.redis_url,
                                 prefix=settings.redis_prefix)
    if settings.llm == "http":
        from engine.clients import OpenAIHTTPLLM

        return OpenAIHTTPLLM(settings.llm_url)
    from engine.async_engine import load_engine  # torch and the model: only when in-process
    from engine.clients import InProcessLLM

    return InProcessLLM(load_engine(settings.model or None, settings.embed_model or None))

"""`/support status` reports the engine through whichever client the process uses."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from adapters.wiring import build_support
from bot.authz import Caller
from bot.keys import Keys
from bot.settings import load_settings
from engine.clients import InProcessLLM, OpenAIHTTPLLM, RedisLLM
from engine.keys import EngineKeys
from tests.conftest import REDIS_URL
from tests.engine_service.tiny import save_tiny, tiny_engine
from tests.fake_engine import FakeEngine, engine  # noqa: F401  (pytest fixture)

ADMIN = Caller(platform="console", user_id="root", display_name="Root")


async def test_in_process_engine_reports_its_figures(tmp_path: Path) -> None:
    llm = InProcessLLM(tiny_engine(save_tiny(tmp_path)))
    try:
        async for _ in llm.stream_chat([{"role": "user", "content": "hi"}], max_tokens=3):
            pass
        health = await llm.health()
        assert health["engine"].startswith("in-process")
        assert health["engine queue"] == "0 waiting"
        assert health["engine running"] == "0 sequences"
    finally:
        await llm.close()


async def test_redis_workers_reported_from_the_consumer_group(redis_client: aioredis.Redis,
                                                              redis_keys: Keys) -> None:
    keys = EngineKeys(prefix=redis_keys.prefix)
    llm = RedisLLM(aioredis.from_url(REDIS_URL, decode_responses=True), keys)
    try:
        assert "none has started" in (await llm.health())["engine"]
        await redis_client.xgroup_create(keys.requests, keys.group, id="0", mkstream=True)
        await redis_client.xadd(keys.requests, {"payload": "{}"})
        health = await llm.health()
        assert health["engine"] == "redis workers: 0 registered"
        assert health["engine pending"] == "0 in progress, 1 waiting"
    finally:
        await llm.close()


async def test_status_command_shows_http_engine_or_that_it_is_down(
        engine: FakeEngine, redis_keys: Keys) -> None:  # noqa: F811
    settings = load_settings(redis_url=REDIS_URL, redis_prefix=redis_keys.prefix,
                             admin_users=["root"])
    up = OpenAIHTTPLLM(engine.url)
    down = OpenAIHTTPLLM("http://127.0.0.1:9/v1", timeout_s=2)
    for llm, expected in ((up, f"http {engine.url}: ok (fake)"),
                          (down, "http://127.0.0.1:9/v1: NOT REACHABLE")):
        support = build_support(settings, {}, llm=llm)
        try:
            status = (await support.admin.handle(ADMIN, "status")).text
            assert expected in status, status
            assert "Redis: ok" in status
        finally:
            await support.close()
            await llm.close()

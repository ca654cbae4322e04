"""Redis Streams workers with the real Redis: serving, SIGKILL mid-generation, dead letters,
client cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from bot.keys import Keys
from engine.async_engine import AsyncEngine
from engine.clients import RedisLLM
from engine.keys import EngineKeys
from engine.redis_protocol import Entries, OutputEntry
from engine.requests import Chunk, GenerationParams
from engine.worker import EngineWorker
from tests.conftest import REDIS_URL
from tests.engine_service.test_async_engine import CountingEmbedder
from tests.engine_service.tiny import metric, slow_down, tiny_engine

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "How do I reset my password?"}]


@pytest.fixture
def ekeys(redis_keys: Keys) -> EngineKeys:
    return EngineKeys(redis_keys.prefix)  # deleted after the test with the rest of the prefix


@contextlib.asynccontextmanager
async def running_worker(engine: AsyncEngine, keys: EngineKeys,
                         **options: Any) -> AsyncIterator[EngineWorker]:
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    worker = EngineWorker(client, engine, keys, block_ms=100, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task
        await engine.close()
        await client.aclose()


async def reference(tiny_dir: Path, max_tokens: int) -> list[int]:
    engine = tiny_engine(tiny_dir)
    try:
        prompt = engine.tokenizer.chat_prompt(MESSAGES)
        stream = engine.submit(prompt, GenerationParams(max_tokens=max_tokens, ignore_eos=True))
        return [t async for c in stream for t in c.token_ids]
    finally:
        await engine.close()


async def test_worker_streams_answers_and_embeddings_through_redis(
        tiny_dir: Path, ekeys: EngineKeys, redis_client: aioredis.Redis) -> None:
    expected = await reference(tiny_dir, 12)
    engine = tiny_engine(tiny_dir)
    engine.core.embedder = CountingEmbedder()
    llm = RedisLLM(redis_client, ekeys, timeout_s=30)
    async with running_worker(engine, ekeys):
        answers = await asyncio.gather(*(
            _collect(llm.stream_chat(MESSAGES, max_tokens=12, ignore_eos=True))
            for _ in range(3)))
        vectors = await llm.embed(["ab", "abc"])
    for chunks in answers:
        assert [t for c in chunks for t in c.token_ids] == expected
        assert chunks[-1].finish_reason == "length"
        assert sum(len(c.logprobs) for c in chunks) == 12
    assert vectors == [[2.0, 1.0], [3.0, 1.0]]
    assert await redis_client.xlen(ekeys.requests) == 0  # acknowledged and deleted
    pending = await redis_client.xpending(ekeys.requests, ekeys.group)
    assert pending["pending"] == 0


async def test_killed_worker_request_completes_on_another_worker_exactly_once(
        tiny_dir: Path, ekeys: EngineKeys, redis_client: aioredis.Redis) -> None:
    expected = await reference(tiny_dir, 40)
    proc = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block; waiting is threaded)
        [sys.executable, "-m", "tests.engine_service.worker_proc", str(tiny_dir), REDIS_URL,
         ekeys.prefix, "doomed", "0.05"], cwd=ROOT, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        ready = await asyncio.to_thread(proc.stdout.readline)
        assert ready.strip() == b"ready"
        llm = RedisLLM(redis_client, ekeys, timeout_s=60)
        received: list[Chunk] = []
        rid = "kill-test"
        stream = llm.stream_chat(MESSAGES, max_tokens=40, ignore_eos=True, request_id=rid)
        async for chunk in stream:
            received.append(chunk)
            if len(received) == 5:
                break  # keep the generator open: the client is still waiting for the rest
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        # what the client will see later must continue exactly where it stopped
        engine = tiny_engine(tiny_dir)
        async with running_worker(engine, ekeys, claim_idle_ms=1000):
            entries = await xrange(redis_client, ekeys.output(rid))
            attempts: list[int] = []
            async for chunk in stream:
                received.append(chunk)
                if not attempts:  # the client deletes the output stream when done
                    attempts = [OutputEntry.parse(f).attempt
                                for _, f in await xrange(redis_client, ekeys.output(rid))]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ids = [t for c in received for t in c.token_ids]
    assert ids == expected  # one complete answer, no token twice, none missing
    assert received[-1].finish_reason == "length"
    assert "".join(c.text for c in received) == tiny_engine(tiny_dir).tokenizer.decode(expected)
    assert {OutputEntry.parse(f).attempt for _, f in entries} == {1}  # the dead attempt's part
    assert set(attempts) == {1, 2}  # ... and the restart from scratch on the second worker
    assert await redis_client.xlen(ekeys.dead) == 0


async def test_request_that_keeps_failing_is_dead_lettered_with_an_error(
        tiny_dir: Path, ekeys: EngineKeys, redis_client: aioredis.Redis) -> None:
    engine = tiny_engine(tiny_dir)
    llm = RedisLLM(redis_client, ekeys, timeout_s=30)
    worker_probe = EngineWorker(redis_client, engine, ekeys)
    await worker_probe.ensure_group()
    stream = llm.stream_chat(MESSAGES, max_tokens=5, request_id="poison")
    first = asyncio.create_task(_collect(stream))
    await asyncio.sleep(0.2)
    # two workers take the request and die without a word (delivery count 2)
    await redis_client.xreadgroup(ekeys.group, "ghost-1", {ekeys.requests: ">"}, count=1)
    (msg_id, _), = (await xrange(redis_client, ekeys.requests))
    await redis_client.xclaim(ekeys.requests, ekeys.group, "ghost-2", 0, cast(Any, [msg_id]))
    async with running_worker(engine, ekeys, max_attempts=2, claim_idle_ms=200):
        chunks = await asyncio.wait_for(first, timeout=20)
    assert chunks[-1].finish_reason == "error"
    assert "giving up" in (chunks[-1].error or "")
    assert [c.token_ids for c in chunks if c.token_ids] == []
    dead = await xrange(redis_client, ekeys.dead)
    assert len(dead) == 1 and dead[0][1]["id"] == "poison" and dead[0][1]["attempts"] == "3"
    assert (await redis_client.xpending(ekeys.requests, ekeys.group))["pending"] == 0


async def test_malformed_request_is_dead_lettered_at_once(
        tiny_dir: Path, ekeys: EngineKeys, redis_client: aioredis.Redis) -> None:
    engine = tiny_engine(tiny_dir)
    async with running_worker(engine, ekeys):
        await redis_client.xadd(ekeys.requests, {"id": "bad", "kind": "chat", "body": "{oops"})
        for _ in range(100):
            if await redis_client.xlen(ekeys.dead):
                break
            await asyncio.sleep(0.05)
    dead = await xrange(redis_client, ekeys.dead)
    assert len(dead) == 1 and "not JSON" in dead[0][1]["error"]
    out = [OutputEntry.parse(f) for _, f in await xrange(redis_client, ekeys.output("bad"))]
    assert out[-1].kind == "error"


async def test_client_that_gives_up_stops_the_generation(
        tiny_dir: Path, ekeys: EngineKeys, redis_client: aioredis.Redis) -> None:
    engine = tiny_engine(tiny_dir)
    slow_down(engine, 0.02)
    llm = RedisLLM(redis_client, ekeys, timeout_s=30)
    async with running_worker(engine, ekeys, claim_idle_ms=300):
        stream = llm.stream_chat(MESSAGES, max_tokens=500, ignore_eos=True)
        async for _ in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]
        for _ in range(100):
            pending = await redis_client.xpending(ekeys.requests, ekeys.group)
            if pending["pending"] == 0 and engine.core.sched.idle:
                break
            await asyncio.sleep(0.05)
        assert pending["pending"] == 0
        assert engine.core.sched.idle  # the slot was freed long before 500 tokens
        cancelled = metric(engine, "engine_requests_total", finish_reason="cancelled")
        assert cancelled == 1


async def xrange(client: aioredis.Redis, key: str) -> Entries:
    return cast(Entries, await client.xrange(key))


async def _collect(stream: AsyncIterator[Chunk]) -> list[Chunk]:
    return [c async for c in stream]


async def test_stopping_worker_finishes_answers_in_progress(
        tiny_dir: Path, ekeys: EngineKeys, redis_client: aioredis.Redis) -> None:
    engine = tiny_engine(tiny_dir)
    slow_down(engine, 0.02)
    worker = EngineWorker(redis_client, engine, ekeys, block_ms=100, claim_idle_ms=600)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    llm = RedisLLM(redis_client, ekeys, timeout_s=30)
    try:
        stream = llm.stream_chat(MESSAGES, max_tokens=30, ignore_eos=True)
        first = await stream.__anext__()
        stop.set()  # SIGTERM: the worker stops taking requests but drains this one
        rest = [c async for c in stream]
        await asyncio.wait_for(task, timeout=20)
    finally:
        await engine.close()
    assert len(first.token_ids) + sum(len(c.token_ids) for c in rest) == 30
    assert rest[-1].finish_reason == "length"
    assert (await redis_client.xpending(ekeys.requests, ekeys.group))["pending"] == 0


async def test_worker_rides_out_a_redis_outage_and_gives_up_after_max_outage(
        tiny_dir: Path, ekeys: EngineKeys, redis_client: aioredis.Redis) -> None:
    from redis.exceptions import TimeoutError as RedisTimeoutError

    expected = await reference(tiny_dir, 6)
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    real_read = client.xreadgroup
    failures = {"left": 3}

    async def flaky_read(*args: Any, **kwargs: Any) -> Any:
        if failures["left"] > 0:  # e.g. a read that timed out while the process was paused
            failures["left"] -= 1
            raise RedisTimeoutError("Timeout reading from 127.0.0.1:6379")
        return await real_read(*args, **kwargs)

    client.xreadgroup = flaky_read  # type: ignore[method-assign]
    engine = tiny_engine(tiny_dir)
    worker = EngineWorker(client, engine, ekeys, block_ms=100, max_outage_s=30)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    llm = RedisLLM(redis_client, ekeys, timeout_s=30)
    try:
        chunks = await _collect(llm.stream_chat(MESSAGES, max_tokens=6, ignore_eos=True))
        assert [t for c in chunks for t in c.token_ids] == expected
        assert failures["left"] == 0 and not task.done()  # it failed 3 times and carried on
        # an outage longer than max_outage_s ends run() with the error (the process exits)
        worker.max_outage_s = 0.3
        failures["left"] = 10**6
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(task, 30)
    finally:
        stop.set()
        if not task.done():
            await task
        await engine.close()
        await client.aclose()

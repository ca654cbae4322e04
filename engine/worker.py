"""Redis Streams worker: many engine processes share one request stream via a consumer group.

At least once, one answer:
  * A worker reads new requests with XREADGROUP and acknowledges each only after its output
    is complete. While it works it refreshes the entries' idle time (XCLAIM ... JUSTID to
    itself), so a long generation is never mistaken for a dead worker.
  * A worker that dies (SIGKILL, OOM, lost node) stops refreshing; after ``claim_idle_ms``
    another worker takes its entries with XAUTOCLAIM and restarts them from scratch. Every
    output entry carries the attempt number (the entry's delivery count), so the client drops
    what a dead attempt had written and reads the new one: it sees one complete answer.
  * An entry delivered more than ``max_attempts`` times (it keeps killing workers, or cannot
    be parsed) goes to the dead-letter stream and the client receives an error.
  * A worker that finds its entry claimed by someone else (it was paused, not dead) abandons
    it; a client that gave up sets a cancel key and the worker stops generating.

The Redis client must be created with ``decode_responses=True``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import zlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.async_engine import AsyncEngine
from engine.errors import EngineError
from engine.keys import EngineKeys
from engine.redis_protocol import (
    CHUNK,
    EMBEDDING,
    END,
    ERROR,
    START,
    ReadReply,
    output_entry,
)
from engine.requests import EngineBusy, GenerationParams

log = logging.getLogger(__name__)


class BadRequest(EngineError):
    """A request entry that can never succeed (malformed JSON, unknown kind, bad params)."""


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class EngineWorker:
    def __init__(self, redis: aioredis.Redis, engine: AsyncEngine,
                 keys: EngineKeys | None = None, *, consumer: str | None = None,
                 max_attempts: int = 3, claim_idle_ms: int = 30_000,
                 max_inflight: int | None = None, block_ms: int = 1000,
                 output_ttl_s: int = 600, drain_s: float = 10.0,
                 max_outage_s: float = 60.0) -> None:
        self.redis = redis
        self.engine = engine
        self.keys = keys or EngineKeys()
        self.consumer = consumer or default_consumer_name()
        self.max_attempts = max_attempts
        self.claim_idle_ms = claim_idle_ms
        # Take only what can run now: the rest stays in Redis for idle workers.
        self.max_inflight = max_inflight or engine.core.plan.running
        self.block_ms = block_ms
        self.output_ttl_s = output_ttl_s
        self.drain_s = drain_s
        # Redis unreachable (restart, failover, a paused process's timed-out read): keep
        # retrying this long before giving up and exiting for a supervisor to restart us.
        self.max_outage_s = max_outage_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._request_ids: dict[str, str] = {}
        self._ack_on_cancel: set[str] = set()

    # -- main loop -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        await self.ensure_group()
        heartbeat = asyncio.create_task(self._heartbeat())
        next_reclaim = 0.0
        outage_since: float | None = None
        loop = asyncio.get_running_loop()
        log.info("engine worker %s consuming %s", self.consumer, self.keys.requests)
        try:
            while not stop.is_set():
                capacity = self.max_inflight - len(self._tasks)
                if capacity <= 0:
                    await asyncio.wait(list(self._tasks.values()), timeout=self.block_ms / 1000,
                                       return_when=asyncio.FIRST_COMPLETED)
                    continue
                batch: list[tuple[str, dict[str, str], int]] = []
                try:
                    if loop.time() >= next_reclaim:
                        batch = await self._reclaim(capacity)
                        next_reclaim = loop.time() + self.claim_idle_ms / 2000
                    if len(batch) < capacity:
                        batch += await self._read_new(capacity - len(batch))
                    outage_since = None
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    outage_since = outage_since or loop.time()
                    if loop.time() - outage_since > self.max_outage_s:
                        raise
                    log.warning("engine worker %s: Redis unavailable (%s), retrying",
                                self.consumer, exc)
                    await asyncio.sleep(min(1.0, self.block_ms / 1000))
                # Entries already claimed are started even if the read after them failed.
                for msg_id, fields, attempt in batch:
                    self._start(msg_id, fields, attempt)
        finally:
            # Stopping: take nothing new, give answers in progress drain_s to finish (the
            # heartbeat keeps them ours meanwhile), then drop the rest unacknowledged for
            # another worker to reclaim.
            if self._tasks and self.drain_s > 0:
                await asyncio.wait(list(self._tasks.values()), timeout=self.drain_s)
            heartbeat.cancel()
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(heartbeat, *tasks, return_exceptions=True)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.requests, self.keys.group, id="0",
                                           mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read_new(self, count: int) -> list[tuple[str, dict[str, str], int]]:
        reply = cast(ReadReply | None, await self.redis.xreadgroup(
            self.keys.group, self.consumer, {self.keys.requests: ">"}, count=count,
            block=self.block_ms))
        return [(msg_id, fields, 1) for _, entries in reply or [] for msg_id, fields in entries]

    async def _reclaim(self, count: int) -> list[tuple[str, dict[str, str], int]]:
        """Entries of dead workers, with their delivery count as the attempt number."""
        reply = await self.redis.xautoclaim(self.keys.requests, self.keys.group, self.consumer,
                                            min_idle_time=self.claim_idle_ms, start_id="0-0",
                                            count=count)
        entries = [(m, f) for m, f in reply[1] if f and m not in self._tasks]
        if not entries:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for msg_id, _ in entries:
                pipe.xpending_range(self.keys.requests, self.keys.group, msg_id, msg_id, 1)
            pending = await pipe.execute()
        out = []
        for (msg_id, fields), info in zip(entries, pending, strict=True):
            attempt = int(info[0]["times_delivered"]) if info else 1
            log.warning("reclaimed %s (request %s), attempt %d", msg_id, fields.get("id"),
                        attempt)
            out.append((msg_id, fields, attempt))
        return out

    def _start(self, msg_id: str, fields: dict[str, str], attempt: int) -> None:
        task = asyncio.create_task(self._handle(msg_id, fields, attempt))
        self._tasks[msg_id] = task
        self._request_ids[msg_id] = fields.get("id", msg_id)
        task.add_done_callback(lambda _: self._forget(msg_id))

    def _forget(self, msg_id: str) -> None:
        self._tasks.pop(msg_id, None)
        self._request_ids.pop(msg_id, None)
        self._ack_on_cancel.discard(msg_id)

    # -- one request ---------------------------------------------------------------------------
    async def _handle(self, msg_id: str, fields: dict[str, str], attempt: int) -> None:
        request_id = fields.get("id", msg_id)
        out = self.keys.output(request_id)
        try:
            if attempt > self.max_attempts:
                await self._dead_letter(msg_id, fields, out, attempt,
                                        f"request failed {attempt - 1} times; giving up")
                return
            await self._emit(out, attempt, START, {"worker": self.consumer})
            await self._serve(fields, out, attempt)
        except asyncio.CancelledError:
            if msg_id in self._ack_on_cancel:  # the client gave up: nothing left to deliver
                await asyncio.shield(self._ack(msg_id))
            raise
        except BadRequest as exc:
            await self._dead_letter(msg_id, fields, out, attempt, str(exc))
        except EngineBusy:
            log.warning("engine busy; %s left for another worker", msg_id)  # no ack
        except Exception:
            log.exception("request %s failed (attempt %d)", request_id, attempt)  # no ack
        else:
            await self._ack(msg_id)

    async def _serve(self, fields: Mapping[str, str], out: str, attempt: int) -> None:
        kind, body = _parse(fields)
        if kind == "embed":
            texts = body.get("texts")
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise BadRequest("embed request needs 'texts': a list of strings")
            try:
                vectors = await self.engine.embed(texts)
            except EngineError as exc:  # e.g. this worker has no embedding model
                raise BadRequest(str(exc)) from exc
            await self._emit(out, attempt, EMBEDDING, {"vectors": vectors})
            return
        try:
            params = GenerationParams.from_json(body.get("params", {}))
            prompt = self.engine.tokenizer.chat_prompt(body["messages"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"invalid chat request: {exc}") from exc
        if params.seed is None and not params.greedy:
            # a restarted attempt must sample the same tokens the client may already have seen
            params = replace(params, seed=zlib.crc32(fields.get("id", "").encode()))
        timeout = body.get("timeout_s")
        try:
            stream = self.engine.submit(prompt, params, request_id=f"{fields.get('id')}/{attempt}",
                                        timeout_s=None if timeout is None else float(timeout))
        except EngineBusy:
            raise
        except EngineError as exc:  # e.g. the prompt does not fit the context
            raise BadRequest(str(exc)) from exc
        async with stream:
            async for chunk in stream:
                kind_out = CHUNK if chunk.finish_reason is None else END
                await self._emit(out, attempt, kind_out, chunk.to_json())

    async def _emit(self, out: str, attempt: int, kind: str, data: Mapping[str, Any]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(out, output_entry(attempt, kind, data))  # type: ignore[arg-type]
            pipe.expire(out, self.output_ttl_s)
            await pipe.execute()

    async def _ack(self, msg_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.requests, self.keys.group, msg_id)
            pipe.xdel(self.keys.requests, msg_id)  # keeps XLEN = backlog, for client backpressure
            await pipe.execute()

    async def _dead_letter(self, msg_id: str, fields: Mapping[str, str], out: str, attempt: int,
                           error: str) -> None:
        log.error("dead-lettering request %s: %s", fields.get("id"), error)
        entry = {**fields, "error": error, "attempts": str(attempt), "worker": self.consumer}
        await self.redis.xadd(self.keys.dead, entry, maxlen=10_000)  # type: ignore[arg-type]
        await self._emit(out, attempt, ERROR, {"error": error})
        await self._ack(msg_id)

    # -- liveness ------------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        """Runs until cancelled, also while a stopping worker drains its last answers. At least
        once a second, so a client's cancel frees its KV slot promptly."""
        interval = min(max(self.claim_idle_ms / 3000, 0.05), 1.0)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._refresh()
            except Exception:  # Redis blip: try again next beat, well before claim_idle
                log.exception("heartbeat failed")

    async def _refresh(self) -> None:
        ids = list(self._tasks)
        if not ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for msg_id in ids:
                pipe.xpending_range(self.keys.requests, self.keys.group, msg_id, msg_id, 1)
                pipe.exists(self.keys.cancel(self._request_ids.get(msg_id, msg_id)))
            replies = await pipe.execute()
        mine = []
        for i, msg_id in enumerate(ids):
            info, cancelled = replies[2 * i], replies[2 * i + 1]
            task = self._tasks.get(msg_id)
            if task is None:
                continue
            if info and info[0]["consumer"] != self.consumer:
                log.warning("%s was reclaimed by %s; abandoning it", msg_id, info[0]["consumer"])
                task.cancel()
            elif cancelled:
                self._ack_on_cancel.add(msg_id)
                task.cancel()
            elif info:
                mine.append(msg_id)
        if mine:  # reset their idle time so nobody reclaims a live request
            await self.redis.xclaim(self.keys.requests, self.keys.group, self.consumer, 0,
                                    cast(list[Any], mine), justid=True)


def _parse(fields: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    kind = fields.get("kind")
    if kind not in ("chat", "embed"):
        raise BadRequest(f"unknown request kind {kind!r}")
    try:
        body = json.loads(fields.get("body", ""))
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return kind, body

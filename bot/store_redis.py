"""Redis ConversationStore (redis.asyncio): shared by every adapter process.

Atomic steps (compare-and-set transitions, the sliding window, lock release) are Lua scripts
so that two processes never interleave inside one of them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, cast

import redis.asyncio as aioredis

from bot.keys import Keys
from bot.models import PLATFORM_ROLES, Conversation, ConversationKey, ConversationState, Turn
from bot.ports import LockTimeout

# KEYS[1] conversation hash; ARGV: ttl_s, to_state, now, n_allowed, allowed..., field/value...
_TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state') or 'bot'
local n = tonumber(ARGV[4])
local ok = false
for i = 1, n do if ARGV[4 + i] == state then ok = true end end
if not ok then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated', ARGV[3])
for i = 5 + n, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1] zset; ARGV: now_ms, window_ms, limit, member
_RATE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# A fair lock: waiters queue in a sorted set scored by message order (platform timestamp).
# The head takes the free lock once its message is `settle_ms` old (or it has waited that
# long, whichever comes first, in case of clock skew): messages sent together are handled in
# the order they were sent, not in the order the network happened to deliver them, and an
# ordinary message (already older than that on arrival) waits for nothing. Each waiter keeps a
# short-lived liveness key; a dead waiter at the head is dropped instead of blocking others.
# KEYS[1] lock, KEYS[2] queue; ARGV: token, lock_ttl_ms, settle_ms, waiter_key, waiter_ttl_ms,
# order_ms
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reg = redis.call('GET', ARGV[4]) or tostring(now)
redis.call('SET', ARGV[4], reg, 'PX', ARGV[5])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[5]))
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
while true do
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #head == 0 or head[1] == ARGV[1] then break end
  if redis.call('EXISTS', KEYS[2] .. ':w:' .. head[1]) == 1 then return 0 end
  redis.call('ZREM', KEYS[2], head[1])
end
if now - math.min(tonumber(reg), tonumber(ARGV[6])) < tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', ARGV[4])
return 1
"""

# Append a turn; a customer/agent turn (ARGV[2] = its platform timestamp, '' otherwise) goes
# before any customer/agent turns at the tail that were sent after it (bot.models.PLATFORM_ROLES),
# so the transcript keeps send order even when the lock's settle window was not enough.
# KEYS[1] turns list, KEYS[2] conversation hash; ARGV: turn json, ts, max_turns, ttl_s
_APPEND_TURN = """
local pivot = false
if ARGV[2] ~= '' then
  local ts = tonumber(ARGV[2])
  local i = -1
  while true do
    local item = redis.call('LINDEX', KEYS[1], i)
    if not item then break end
    local t = cjson.decode(item)
    if (t.role ~= 'customer' and t.role ~= 'agent') or tonumber(t.ts) <= ts then break end
    pivot = item
    i = i - 1
  end
end
if pivot then
  redis.call('LINSERT', KEYS[1], 'BEFORE', pivot, ARGV[1])
else
  redis.call('RPUSH', KEYS[1], ARGV[1])
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# Delete the lock only if we still own it (our token), so a late release never frees
# a lock that expired and was taken by someone else.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore:
    def __init__(self, client: aioredis.Redis, keys: Keys | None = None, max_turns: int = 50,
                 ttl_s: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.keys = keys or Keys()
        self._max_turns = max_turns
        self._ttl_s = ttl_s
        self._transition = client.register_script(_TRANSITION)
        self._rate = client.register_script(_RATE)
        self._unlock = client.register_script(_UNLOCK)
        self._acquire = client.register_script(_ACQUIRE)
        self._append_turn = client.register_script(_APPEND_TURN)
        self.lock_settle_ms = 250

    @classmethod
    def from_url(cls, url: str, keys: Keys | None = None, **kwargs: Any) -> RedisStore:
        return cls(aioredis.from_url(url, decode_responses=True), keys, **kwargs)

    async def first_delivery(self, platform: str, event_id: str, ttl_s: int) -> bool:
        created = await self.client.set(self.keys.dedup(platform, event_id), "1", nx=True, ex=ttl_s)
        return bool(created)

    async def allow_message(self, platform: str, user: str, limit: int, window_s: float) -> bool:
        now_ms = int(time.time() * 1000)
        member = f"{now_ms}:{secrets.token_hex(4)}"
        allowed = await self._rate(keys=[self.keys.rate(platform, user)],
                                   args=[now_ms, int(window_s * 1000), limit, member])
        return bool(int(allowed))

    @asynccontextmanager
    async def lock(self, key: ConversationKey, ttl_s: float = 60.0, wait_s: float = 30.0,
                   order: float | None = None) -> AsyncIterator[None]:
        name, queue = self.keys.lock(key), self.keys.lock_queue(key)
        token = secrets.token_hex(16)
        waiter = f"{queue}:w:{token}"
        order = time.time() if order is None else order
        await self.client.zadd(queue, {token: order})
        deadline = time.monotonic() + wait_s
        delay = 0.005
        args: list[str | int] = [token, int(ttl_s * 1000), self.lock_settle_ms, waiter, 2000,
                                 int(order * 1000)]
        while not int(await self._acquire(keys=[name, queue], args=args)):
            if time.monotonic() >= deadline:
                await self.client.zrem(queue, token)
                await self.client.delete(waiter)
                raise LockTimeout(f"conversation {key.id} stayed locked for {wait_s}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            await self._unlock(keys=[name], args=[token])

    async def load(self, key: ConversationKey, max_turns: int = 20) -> Conversation:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.conversation(key))
            pipe.lrange(self.keys.turns(key), -max_turns, -1)
            fields_raw, turns_raw = await pipe.execute()
        fields = cast(dict[str, str], dict(fields_raw))
        state = ConversationState(fields.pop("state", ConversationState.BOT))
        turns = tuple(Turn.from_json(json.loads(t)) for t in turns_raw) if max_turns > 0 else ()
        return Conversation(key=key, state=state, fields=fields, turns=turns)

    async def transition(self, key: ConversationKey, allowed_from: Iterable[ConversationState],
                         to: ConversationState, fields: dict[str, str] | None = None) -> bool:
        allowed = [str(s) for s in allowed_from]
        flat = [item for pair in (fields or {}).items() for item in pair]
        done = await self._transition(
            keys=[self.keys.conversation(key)],
            args=[self._ttl_s, str(to), repr(time.time()), len(allowed), *allowed, *flat])
        return bool(int(done))

    async def set_fields(self, key: ConversationKey, fields: dict[str, str]) -> None:
        if "state" in fields:
            raise ValueError("change state with transition(), not set_fields()")
        if not fields:
            return
        name = self.keys.conversation(key)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(name, mapping=cast(Any, fields))  # redis-py types want a wider Mapping
            pipe.expire(name, self._ttl_s)
            await pipe.execute()

    async def append_turn(self, key: ConversationKey, turn: Turn) -> None:
        ts = repr(float(turn.ts)) if turn.role in PLATFORM_ROLES else ""
        await self._append_turn(keys=[self.keys.turns(key), self.keys.conversation(key)],
                                args=[json.dumps(turn.to_json()), ts, self._max_turns,
                                      self._ttl_s])

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except aioredis.RedisError:
            return False

    async def close(self) -> None:
        await self.client.aclose()

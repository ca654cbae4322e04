"""A small key-value port for live config, feedback and analytics, with Redis and memory
implementations. These features only need counters, hashes and capped lists, so they are
written once against this port instead of twice against two stores."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Protocol, cast

import redis.asyncio as aioredis


class KeyValue(Protocol):
    async def hgetall(self, name: str) -> dict[str, str]: ...

    async def hset(self, name: str, mapping: dict[str, str], ttl_s: int = 0) -> None:
        """Set fields (last write wins); ttl_s > 0 makes the hash expire after it."""
        ...

    async def hdel(self, name: str, *fields: str) -> None: ...

    async def hincrby(self, name: str, field: str, amount: int, ttl_s: int) -> None:
        """Add to a counter field; the hash expires ttl_s after its last change."""
        ...

    async def hsetnx(self, name: str, field: str, value: str, ttl_s: int) -> bool:
        """Set a field only if absent (first fact wins); True if set."""
        ...

    async def push_capped(self, name: str, value: str, cap: int, ttl_s: int) -> None:
        """Append to a list, keeping only the last `cap` items."""
        ...

    async def lrange(self, name: str) -> list[str]: ...


class MemoryKeyValue:
    """One process only; expiry is not modelled (a process does not outlive its data)."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = defaultdict(dict)
        self.lists: dict[str, list[str]] = defaultdict(list)

    async def hgetall(self, name: str) -> dict[str, str]:
        return dict(self.hashes.get(name, {}))

    async def hset(self, name: str, mapping: dict[str, str], ttl_s: int = 0) -> None:
        self.hashes[name].update(mapping)

    async def hdel(self, name: str, *fields: str) -> None:
        for f in fields:
            self.hashes[name].pop(f, None)

    async def hincrby(self, name: str, field: str, amount: int, ttl_s: int) -> None:
        h = self.hashes[name]
        h[field] = str(int(h.get(field, "0")) + amount)

    async def hsetnx(self, name: str, field: str, value: str, ttl_s: int) -> bool:
        h = self.hashes[name]
        if field in h:
            return False
        h[field] = value
        return True

    async def push_capped(self, name: str, value: str, cap: int, ttl_s: int) -> None:
        items = self.lists[name]
        items.append(value)
        del items[: max(0, len(items) - cap)]

    async def lrange(self, name: str) -> list[str]:
        return list(self.lists.get(name, []))


class RedisKeyValue:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def hgetall(self, name: str) -> dict[str, str]:
        return cast(dict[str, str], dict(await self.client.hgetall(name)))

    async def hset(self, name: str, mapping: dict[str, str], ttl_s: int = 0) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(name, mapping=cast(Any, mapping))  # redis-py wants a wider Mapping
            if ttl_s > 0:
                pipe.expire(name, ttl_s)
            await pipe.execute()

    async def hdel(self, name: str, *fields: str) -> None:
        if fields:
            await self.client.hdel(name, *fields)

    async def hincrby(self, name: str, field: str, amount: int, ttl_s: int) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hincrby(name, field, amount)
            pipe.expire(name, ttl_s)
            await pipe.execute()

    async def hsetnx(self, name: str, field: str, value: str, ttl_s: int) -> bool:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(name, field, value)
            pipe.expire(name, ttl_s)
            created, _ = await pipe.execute()
        return bool(created)

    async def push_capped(self, name: str, value: str, cap: int, ttl_s: int) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(name, value)
            pipe.ltrim(name, -cap, -1)
            pipe.expire(name, ttl_s)
            await pipe.execute()

    async def lrange(self, name: str) -> list[str]:
        return cast(list[str], await self.client.lrange(name, 0, -1))

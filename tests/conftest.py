"""Shared fixtures: a real Redis (own key prefix, cleaned up) and in-memory fakes of ports."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.keys import Keys
from bot.models import Reply, ReplyKind

REDIS_URL = os.environ.get("SUPPORTBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except aioredis.ConnectionError as exc:  # a missing Redis is a failure, never a skip
        raise RuntimeError(f"tests need Redis at {REDIS_URL} (run `make redis`)") from exc
    yield client
    await client.aclose()


@pytest.fixture
async def redis_keys(redis_client: aioredis.Redis) -> AsyncIterator[Keys]:
    """A unique key prefix for one test; every key under it is deleted afterwards."""
    keys = Keys(prefix=f"sbtest-{uuid.uuid4().hex[:12]}")
    yield keys
    async for name in redis_client.scan_iter(match=f"{keys.prefix}:*", count=500):
        await redis_client.delete(name)


class RecordingOutbox:
    """An Outbox that remembers every post and edit, as a platform would show them."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.messages: dict[str, Reply] = {}
        self.log: list[tuple[str, str, Reply]] = []  # (op, message id, reply)

    async def post(self, reply: Reply) -> str:
        message_id = f"m{next(self._ids)}"
        self.messages[message_id] = reply
        self.log.append(("post", message_id, reply))
        return message_id

    async def edit(self, message_id: str, reply: Reply) -> None:
        assert message_id in self.messages, f"edit of unknown message {message_id}"
        self.messages[message_id] = reply
        self.log.append(("edit", message_id, reply))

    def final(self) -> list[Reply]:
        return [r for r in self.messages.values() if r.kind is not ReplyKind.PARTIAL]


@pytest.fixture
def outbox() -> RecordingOutbox:
    return RecordingOutbox()

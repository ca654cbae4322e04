"""In-memory ConversationStore: the embedded default for a single process (no Redis URL)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from bot.models import PLATFORM_ROLES, Conversation, ConversationKey, ConversationState, Turn
from bot.ports import Clock, LockTimeout, SystemClock


class _OrderedLock:
    """A lock whose waiters are served by (order, arrival), not just arrival.

    As in the Redis store: a free lock goes to a message only once it is ``settle_s`` old by
    its platform timestamp (``order``, wall-clock seconds), so two messages sent together are
    handled in the order they were sent even when the later one reaches the lock first. An
    ordinary message is older than that on arrival and waits for nothing."""

    def __init__(self, settle_s: float = 0.0) -> None:
        self._held = False
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.settle_s = settle_s

    async def acquire(self, order: float, key: ConversationKey, wait_s: float,
                      settle: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if not self._held and not self._waiters:
            young_for = self.settle_s - (time.time() - order) if settle else 0.0
            if young_for <= 0:
                self._held = True
                return
            # an earlier message may still be on its way: queue, and take the lock (or hand it
            # to whoever is earlier by then) once this one has settled
            loop.call_later(young_for, self._grant_if_free)
        future: asyncio.Future[None] = loop.create_future()
        entry = (order, next(self._seq), future)
        heapq.heappush(self._waiters, entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=wait_s)
        except TimeoutError as exc:
            if future.done():  # handed the lock just as we gave up: pass it on
                self.release()
            else:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise LockTimeout(f"conversation {key.id} stayed locked for {wait_s}s") from exc

    def _grant_if_free(self) -> None:
        if not self._held and self._waiters:
            self._held = True
            _, _, future = heapq.heappop(self._waiters)
            future.set_result(None)

    def release(self) -> None:
        if self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            future.set_result(None)  # ownership passes straight to the next waiter
        else:
            self._held = False


class MemoryStore:
    def __init__(self, clock: Clock | None = None, max_turns: int = 50,
                 ttl_s: float = 7 * 24 * 3600) -> None:
        self._clock = clock or SystemClock()
        self._max_turns = max_turns
        self._ttl_s = ttl_s
        self._dedup: dict[tuple[str, str], float] = {}
        self._rate: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self.lock_settle_s = 0.25  # as RedisStore.lock_settle_ms
        self._locks: dict[ConversationKey, _OrderedLock] = defaultdict(
            lambda: _OrderedLock(self.lock_settle_s))
        self._fields: dict[ConversationKey, dict[str, str]] = {}
        self._turns: dict[ConversationKey, list[Turn]] = {}
        self._expires: dict[ConversationKey, float] = {}

    def _expire(self, key: ConversationKey) -> None:
        if self._expires.get(key, float("inf")) <= self._clock.now():
            self._fields.pop(key, None)
            self._turns.pop(key, None)
            self._expires.pop(key, None)

    def _touch(self, key: ConversationKey) -> None:
        self._expires[key] = self._clock.now() + self._ttl_s

    async def first_delivery(self, platform: str, event_id: str, ttl_s: int) -> bool:
        now = self._clock.now()
        seen_until = self._dedup.get((platform, event_id))
        if seen_until is not None and seen_until > now:
            return False
        self._dedup[(platform, event_id)] = now + ttl_s
        return True

    async def allow_message(self, platform: str, user: str, limit: int, window_s: float) -> bool:
        now = self._clock.now()
        stamps = self._rate[(platform, user)]
        while stamps and stamps[0] <= now - window_s:
            stamps.popleft()
        if len(stamps) >= limit:
            return False
        stamps.append(now)
        return True

    @asynccontextmanager
    async def lock(self, key: ConversationKey, ttl_s: float = 60.0, wait_s: float = 30.0,
                   order: float | None = None) -> AsyncIterator[None]:
        lock = self._locks[key]
        # Only a message's own timestamp settles; other lockers (handoff, sweeper) never wait.
        await lock.acquire(self._clock.now() if order is None else order, key, wait_s,
                           settle=order is not None)
        try:
            yield
        finally:
            lock.release()

    async def load(self, key: ConversationKey, max_turns: int = 20) -> Conversation:
        self._expire(key)
        fields = dict(self._fields.get(key, {}))
        state = ConversationState(fields.pop("state", ConversationState.BOT))
        turns = tuple(self._turns.get(key, [])[-max_turns:]) if max_turns > 0 else ()
        return Conversation(key=key, state=state, fields=fields, turns=turns)

    async def transition(self, key: ConversationKey, allowed_from: Iterable[ConversationState],
                         to: ConversationState, fields: dict[str, str] | None = None) -> bool:
        self._expire(key)
        current = self._fields.get(key, {}).get("state", ConversationState.BOT)
        if current not in {str(s) for s in allowed_from}:
            return False
        record = self._fields.setdefault(key, {})
        record.update(fields or {})
        record["state"] = str(to)
        record["updated"] = repr(self._clock.now())
        self._touch(key)
        return True

    async def set_fields(self, key: ConversationKey, fields: dict[str, str]) -> None:
        self._expire(key)
        if "state" in fields:
            raise ValueError("change state with transition(), not set_fields()")
        self._fields.setdefault(key, {}).update(fields)
        self._touch(key)

    async def append_turn(self, key: ConversationKey, turn: Turn) -> None:
        self._expire(key)
        turns = self._turns.setdefault(key, [])
        at = len(turns)  # after any later-sent platform messages already stored: send order
        while turn.role in PLATFORM_ROLES and at and turns[at - 1].role in PLATFORM_ROLES \
                and turns[at - 1].ts > turn.ts:
            at -= 1
        turns.insert(at, turn)
        del turns[: max(0, len(turns) - self._max_turns)]
        self._touch(key)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None

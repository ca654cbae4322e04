"""One contract, two stores: Redis (real server) and in-memory must behave the same."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.keys import Keys
from bot.models import ConversationKey, ConversationState, Turn
from bot.ports import ConversationStore, LockTimeout
from bot.store_memory import MemoryStore
from bot.store_redis import RedisStore
from tests.conftest import REDIS_URL

KEY = ConversationKey("slack", "T1", "C1", "1700000000.0001")
OTHER = ConversationKey("slack", "T1", "C1", "1700000000.0002")


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis_client: aioredis.Redis,
                redis_keys: Keys) -> AsyncIterator[ConversationStore]:
    if request.param == "memory":
        yield MemoryStore(max_turns=5)
    else:
        s = RedisStore.from_url(REDIS_URL, redis_keys, max_turns=5)
        yield s
        await s.close()


async def test_new_conversation_starts_with_bot(store: ConversationStore) -> None:
    conv = await store.load(KEY)
    assert conv.state is ConversationState.BOT
    assert conv.turns == ()


async def test_history_is_capped_and_ordered(store: ConversationStore) -> None:
    for i in range(8):
        await store.append_turn(KEY, Turn("customer", f"msg {i}", float(i)))
    conv = await store.load(KEY, max_turns=20)
    assert [t.text for t in conv.turns] == [f"msg {i}" for i in range(3, 8)]
    assert [t.text for t in (await store.load(KEY, max_turns=2)).turns] == ["msg 6", "msg 7"]
    assert (await store.load(OTHER)).turns == ()


async def test_platform_messages_are_kept_in_send_order(store: ConversationStore) -> None:
    """Two messages sent together may be handled in the other order: the transcript still
    reads in send order. Bot and system turns (our clock) are never moved across."""
    await store.append_turn(KEY, Turn("bot", "answer", 11.0))  # the fixture keeps 5 turns
    await store.append_turn(KEY, Turn("agent", "late-handled", 13.0))
    await store.append_turn(KEY, Turn("customer", "sent earlier", 12.0))
    await store.append_turn(KEY, Turn("agent", "sent before the bot answered", 9.0))
    await store.append_turn(KEY, Turn("system", "note", 1.0))  # our clock: appended as is
    texts = [t.text for t in (await store.load(KEY)).turns]
    assert texts == ["answer", "sent before the bot answered", "sent earlier",
                     "late-handled", "note"]


async def test_turn_round_trips_every_field(store: ConversationStore) -> None:
    turn = Turn("bot", "héllo ✓", 12.5, user="U1", article_id="a1", reason="answered")
    await store.append_turn(KEY, turn)
    assert (await store.load(KEY)).turns == (turn,)


async def test_transition_is_compare_and_set(store: ConversationStore) -> None:
    B, W, H = ConversationState.BOT, ConversationState.WAITING_HUMAN, ConversationState.HUMAN
    assert await store.transition(KEY, [B], W, {"ticket": "T-1"})
    assert not await store.transition(KEY, [B], H)  # no longer BOT
    conv = await store.load(KEY)
    assert conv.state is W and conv.fields["ticket"] == "T-1"
    assert await store.transition(KEY, [W], H, {"agent": "U9"})
    conv = await store.load(KEY)
    assert conv.state is H and conv.fields["agent"] == "U9" and conv.fields["ticket"] == "T-1"


async def test_concurrent_transitions_have_one_winner(store: ConversationStore) -> None:
    W, H = ConversationState.WAITING_HUMAN, ConversationState.HUMAN
    await store.transition(KEY, [ConversationState.BOT], W)
    results = await asyncio.gather(*[store.transition(KEY, [W], H, {"agent": f"U{i}"})
                                     for i in range(10)])
    assert sum(results) == 1
    winner = results.index(True)
    assert (await store.load(KEY)).fields["agent"] == f"U{winner}"


async def test_set_fields_refuses_state(store: ConversationStore) -> None:
    await store.set_fields(KEY, {"summary": "x"})
    assert (await store.load(KEY)).fields["summary"] == "x"
    with pytest.raises(ValueError, match="transition"):
        await store.set_fields(KEY, {"state": "human"})
    assert (await store.load(KEY)).state is ConversationState.BOT


async def test_dedup_first_delivery_only(store: ConversationStore) -> None:
    assert await store.first_delivery("slack", "Ev1", ttl_s=60)
    assert not await store.first_delivery("slack", "Ev1", ttl_s=60)
    assert await store.first_delivery("discord", "Ev1", ttl_s=60)
    results = await asyncio.gather(*[store.first_delivery("slack", "Ev2", 60) for _ in range(10)])
    assert sum(results) == 1


async def test_rate_limit_sliding_window(store: ConversationStore) -> None:
    allowed = [await store.allow_message("slack", "U1", limit=3, window_s=0.3) for _ in range(5)]
    assert allowed == [True, True, True, False, False]
    assert await store.allow_message("slack", "U2", limit=3, window_s=0.3)  # per user
    await asyncio.sleep(0.35)
    assert await store.allow_message("slack", "U1", limit=3, window_s=0.3)


async def test_lock_serialises_one_conversation(store: ConversationStore) -> None:
    order: list[str] = []

    async def worker(name: str) -> None:
        async with store.lock(KEY):
            order.append(f"{name}-in")
            await asyncio.sleep(0.05)
            order.append(f"{name}-out")

    await asyncio.gather(worker("a"), worker("b"), worker("c"))
    for i in range(0, 6, 2):  # never two inside at once
        assert order[i].endswith("-in") and order[i + 1].endswith("-out")
        assert order[i][0] == order[i + 1][0]


async def test_lock_waiters_are_served_in_message_order(store: ConversationStore) -> None:
    served: list[float] = []

    async def waiter(order: float) -> None:
        async with store.lock(KEY, order=order):
            served.append(order)

    async with store.lock(KEY):
        tasks = []
        for order in (3.0, 1.0, 2.0):  # arrival order differs from message order
            tasks.append(asyncio.create_task(waiter(order)))
            await asyncio.sleep(0.02)
    await asyncio.gather(*tasks)
    assert served == [1.0, 2.0, 3.0]


async def test_messages_sent_together_are_served_in_send_order_even_on_a_free_lock(
        store: ConversationStore) -> None:
    served: list[str] = []
    sent = time.time()  # two messages of the same instant: the first 30 ms before the second

    async def handle(name: str, ts: float) -> None:
        async with store.lock(KEY, order=ts):
            served.append(name)

    later = asyncio.create_task(handle("second", sent))  # its event reaches us first
    await asyncio.sleep(0.05)
    earlier = asyncio.create_task(handle("first", sent - 0.03))
    await asyncio.gather(later, earlier)
    assert served == ["first", "second"]


async def test_lock_does_not_block_other_conversations(store: ConversationStore) -> None:
    async with store.lock(KEY), store.lock(OTHER, wait_s=0.5):
        pass


async def test_lock_wait_times_out(store: ConversationStore) -> None:
    async with store.lock(KEY):
        with pytest.raises(LockTimeout):
            async with store.lock(KEY, wait_s=0.1):
                pass
    async with store.lock(KEY, wait_s=2):  # released afterwards
        pass

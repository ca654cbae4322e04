"""AsyncEngine on a tiny random Llama: batching parity, cancel, stop strings, backpressure,
deadlines, prefix cache, chunked prefill, batched embeddings, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from engine.async_engine import AsyncEngine, RequestStream
from engine.requests import Chunk, EngineBusy, GenerationParams
from tests.engine_service.tiny import metric, observe, slow_down, tiny_engine

QUESTIONS = [
    "How do I reset my password?", "Where is my invoice?", "Can I export my data to CSV?",
    "hello there", "The quick brown fox", "Reports then Export", "one per month please",
    "What about 0123456789?",
]


def prompt_of(engine: AsyncEngine, text: str, system: str = "") -> list[int]:
    messages = ([{"role": "system", "content": system}] if system else [])
    return engine.tokenizer.chat_prompt([*messages, {"role": "user", "content": text}])


async def collect(stream: RequestStream) -> tuple[list[int], str, list[Chunk]]:
    chunks = [c async for c in stream]
    ids = [t for c in chunks for t in c.token_ids]
    return ids, "".join(c.text for c in chunks), chunks


GREEDY = GenerationParams(max_tokens=16, ignore_eos=True)


async def test_32_concurrent_streams_match_each_run_alone(tiny_dir: Path) -> None:
    engine = tiny_engine(tiny_dir)
    model = observe(engine)
    prompts = [prompt_of(engine, f"{QUESTIONS[i % 8]} (case {i})") for i in range(32)]
    try:
        alone = [(await collect(engine.submit(p, GREEDY)))[0] for p in prompts]
        assert max(rows for rows, _ in model.shapes) == 1
        together = await asyncio.gather(*(collect(engine.submit(p, GREEDY)) for p in prompts))
    finally:
        await engine.close()
    assert [ids for ids, _, _ in together] == alone
    assert all(len(ids) == 16 for ids in alone)
    assert len({tuple(a) for a in alone}) > 1  # distinct prompts, distinct answers
    # the concurrent run really was batched: all 32 streams decoded in one forward
    assert max(rows for rows, width in model.shapes if width == 1) == 32
    assert metric(engine, "engine_generated_tokens_total") == 2 * 32 * 16


async def test_cancel_mid_stream_frees_the_slot_for_a_waiting_request(tiny_dir: Path) -> None:
    engine = tiny_engine(tiny_dir, max_batch=1)
    slow_down(engine, 0.01)
    try:
        first = engine.submit(prompt_of(engine, QUESTIONS[0]),
                              GenerationParams(max_tokens=400, ignore_eos=True))
        got = [await first.__anext__() for _ in range(3)]
        second = engine.submit(prompt_of(engine, QUESTIONS[1]), GREEDY)
        await asyncio.sleep(0.1)
        assert len(engine.core.sched.waiting) == 1  # no slot: it waits behind the first
        await first.aclose()
        ids, _, chunks = await asyncio.wait_for(collect(second), timeout=10)
        assert len(ids) == 16 and chunks[-1].finish_reason == "length"
        assert all(c.finish_reason is None for c in got)
        assert engine.core.sched.slots.n_free == 1
        cancelled = metric(engine, "engine_requests_total", finish_reason="cancelled")
        assert cancelled == 1
    finally:
        await engine.close()


async def test_consumer_task_cancelled_frees_the_slot(tiny_dir: Path) -> None:
    engine = tiny_engine(tiny_dir, max_batch=1)
    slow_down(engine, 0.01)
    try:
        async def consume() -> None:
            async for _ in engine.stream_chat([{"role": "user", "content": "hi"}],
                                              max_tokens=400):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        assert engine.core.sched.slots.n_free == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if engine.core.sched.slots.n_free == 1:
                break
            await asyncio.sleep(0.01)
        assert engine.core.sched.slots.n_free == 1
    finally:
        await engine.close()


async def test_stop_string_ends_generation_and_never_leaks(tiny_dir: Path) -> None:
    engine = tiny_engine(tiny_dir)
    prompt = prompt_of(engine, QUESTIONS[2])
    try:
        _, full, _ = await collect(engine.submit(
            prompt, GenerationParams(max_tokens=40, ignore_eos=True)))
        assert len(full) > 12
        stop = full[6:10]  # a stop string that the greedy answer is known to contain
        cut = full.index(stop)
        _, text, chunks = await collect(engine.submit(
            prompt, GenerationParams(max_tokens=40, ignore_eos=True, stop=("zzzq", stop))))
    finally:
        await engine.close()
    assert text == full[:cut]
    assert chunks[-1].finish_reason == "stop"
    assert len(chunks) < 40


async def test_full_queue_raises_engine_busy(tiny_dir: Path) -> None:
    engine = tiny_engine(tiny_dir, max_batch=1, max_queue=2)
    slow_down(engine, 0.02)
    params = GenerationParams(max_tokens=3, ignore_eos=True)
    accepted: list[RequestStream] = []
    try:
        with pytest.raises(EngineBusy):
            for q in QUESTIONS[:6]:
                accepted.append(engine.submit(prompt_of(engine, q), params))
        assert 2 <= len(accepted) <= 3  # max_queue waiting, plus at most the admitted one
        assert metric(engine, "engine_rejected_total") == 1
        for stream in accepted:  # the accepted ones still complete
            ids, _, _ = await collect(stream)
            assert len(ids) == 3
        ids, _, _ = await collect(engine.submit(prompt_of(engine, "again"), params))
        assert len(ids) == 3  # room again once the queue drained
    finally:
        await engine.close()


async def test_deadline_ends_request_with_error(tiny_dir: Path) -> None:
    engine = tiny_engine(tiny_dir)
    slow_down(engine, 0.02)
    try:
        _, _, chunks = await collect(engine.submit(
            prompt_of(engine, "hi"), GenerationParams(max_tokens=400, ignore_eos=True),
            timeout_s=0.3))
        assert chunks[-1].finish_reason == "error"
        assert chunks[-1].error == "deadline exceeded"
        assert 1 <= len(chunks) < 100
        assert engine.core.sched.slots.n_free == engine.core.plan.running
    finally:
        await engine.close()


SYSTEM = ("You are the support assistant for Tallyhub. Answer from the articles below only. "
          "Reset password: open Settings, Security, Reset password; the link arrives in five "
          "minutes. Invoices: Billing, one per month, exported as PDF or CSV. ") * 2


async def test_prefix_cache_reuses_shared_system_prompt_with_identical_tokens(
        tiny_dir: Path) -> None:
    cached = tiny_engine(tiny_dir)
    plain = tiny_engine(tiny_dir, prefix_slots=0)
    prompts = [prompt_of(cached, q, SYSTEM) for q in QUESTIONS[:4]]
    try:
        with_cache = [(await collect(cached.submit(p, GREEDY)))[0] for p in prompts]
        without = [(await collect(plain.submit(p, GREEDY)))[0] for p in prompts]
    finally:
        await cached.close()
        await plain.close()
    assert with_cache == without
    stats = cached.core.sched.prefix.stats
    system_len = len(prompt_of(cached, "", SYSTEM)) - 8
    assert stats.hits == 3 and stats.hit_tokens >= 3 * system_len
    # prompt tokens actually computed: the system prompt once, then only the questions
    assert metric(cached, "engine_prompt_tokens_total") < sum(map(len, prompts)) - 2 * system_len
    assert metric(plain, "engine_prompt_tokens_total") == sum(map(len, prompts))


async def test_concurrent_requests_wait_for_the_shared_prefix_instead_of_recomputing(
        tiny_dir: Path) -> None:
    engine = tiny_engine(tiny_dir)
    prompts = [prompt_of(engine, q, SYSTEM) for q in QUESTIONS]
    try:
        await asyncio.gather(*(collect(engine.submit(p, GREEDY)) for p in prompts))
    finally:
        await engine.close()
    system_len = len(prompt_of(engine, "", SYSTEM)) - 8
    computed = metric(engine, "engine_prompt_tokens_total")
    assert computed < sum(map(len, prompts)) - (len(prompts) - 1) * system_len


async def test_decode_reads_the_shared_system_prompt_once_with_identical_tokens(
        tiny_dir: Path) -> None:
    cached = tiny_engine(tiny_dir)
    plain = tiny_engine(tiny_dir, prefix_slots=0)
    model = observe(cached)
    prompts = [prompt_of(cached, q, SYSTEM) for q in QUESTIONS]
    try:
        alone = [(await collect(plain.submit(p, GREEDY)))[0] for p in prompts]
        together = await asyncio.gather(*(collect(cached.submit(p, GREEDY)) for p in prompts))
    finally:
        await cached.close()
        await plain.close()
    assert [ids for ids, _, _ in together] == alone
    system_len = len(prompt_of(cached, "", SYSTEM)) - 8
    groups = [g for g in model.shared if g]
    assert groups, "no decode step read a shared prefix"
    # the widest step: every question in one group sharing (at least) the system prompt
    widest = max(groups, key=lambda gs: sum(len(rows) for rows, _ in gs))
    [(rows, shared_len)] = widest
    assert len(rows) == len(prompts) and shared_len >= system_len


async def test_chunked_prefill_keeps_running_streams_moving(tiny_dir: Path) -> None:
    engine = tiny_engine(tiny_dir, prefill_chunk=16, prefix_slots=0)
    reference = tiny_engine(tiny_dir, prefill_chunk=1024, prefix_slots=0)
    slow_down(engine, 0.005)
    long_prompt = prompt_of(engine, QUESTIONS[0], SYSTEM)
    assert len(long_prompt) > 10 * 16
    events: list[str] = []

    async def tagged(stream: RequestStream, tag: str) -> list[int]:
        ids: list[int] = []
        async for chunk in stream:
            events.append(tag)
            ids.extend(chunk.token_ids)
        return ids

    try:
        running = asyncio.create_task(tagged(engine.submit(
            prompt_of(engine, "hi"), GenerationParams(max_tokens=60, ignore_eos=True)), "run"))
        for _ in range(1000):  # until the first stream is running
            if events:
                break
            await asyncio.sleep(0.005)
        long_ids = await tagged(engine.submit(long_prompt, GREEDY), "long")
        await running
        expected, _, _ = await collect(reference.submit(long_prompt, GREEDY))
    finally:
        await engine.close()
        await reference.close()
    assert long_ids == expected  # chunking does not change the answer
    first_long = events.index("long")
    # while the long prompt was read in >= 10 chunks, the running stream kept producing
    assert events[:first_long].count("run") >= 10


class CountingEmbedder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        return torch.tensor([[float(len(t)), 1.0] for t in texts])


async def test_concurrent_embedding_requests_share_one_batch(tiny_dir: Path) -> None:
    engine = tiny_engine(tiny_dir)
    embedder = CountingEmbedder()
    engine.core.embedder = embedder
    slow_down(engine, 0.05)
    try:
        busy = engine.submit(prompt_of(engine, "hi"), GenerationParams(max_tokens=4,
                                                                    ignore_eos=True))
        await busy.__anext__()  # the model thread is now inside a slow step
        results = await asyncio.gather(engine.embed(["a"]), engine.embed(["bb", "ccc"]),
                                       engine.embed(["dddd"]))
        await busy.aclose()
    finally:
        await engine.close()
    assert list(results) == [[[1.0, 1.0]], [[2.0, 1.0], [3.0, 1.0]], [[4.0, 1.0]]]
    assert embedder.calls == [["a", "bb", "ccc", "dddd"]]


async def test_metrics_report_queue_ttft_tokens_and_prefix_hits(tiny_dir: Path) -> None:
    engine = tiny_engine(tiny_dir)
    try:
        for q in QUESTIONS[:3]:
            await collect(engine.submit(prompt_of(engine, q, SYSTEM), GREEDY))
    finally:
        await engine.close()
    text = engine.metrics.render().decode()
    assert "engine_time_to_first_token_seconds_count 3.0" in text
    assert "engine_generated_tokens_total 48.0" in text
    assert "engine_queue_depth 0.0" in text
    assert "engine_prefix_cache_hits_total 2.0" in text
    rate = metric(engine, "engine_prefix_cache_hit_rate")
    assert 0.3 < rate < 1.0

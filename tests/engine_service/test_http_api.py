"""The OpenAI-compatible HTTP API, driven over real HTTP with httpx (and our OpenAIHTTPLLM)."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from engine.async_engine import AsyncEngine
from engine.clients import OpenAIHTTPLLM
from engine.http_api import serve
from engine.requests import GenerationParams
from tests.engine_service.test_async_engine import CountingEmbedder
from tests.engine_service.tiny import metric, slow_down, tiny_engine

MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where is my invoice?"}]


@pytest.fixture
async def server(tiny_dir: Path) -> AsyncIterator[tuple[AsyncEngine, str]]:
    engine = tiny_engine(tiny_dir, max_batch=2, max_queue=1)
    engine.core.embedder = CountingEmbedder()
    runner = await serve(engine, "127.0.0.1", 0)
    host, port = runner.addresses[0][:2]
    try:
        yield engine, f"http://{host}:{port}"
    finally:
        await runner.cleanup()
        await engine.close()


async def expected_ids(engine: AsyncEngine, n: int) -> list[int]:
    stream = engine.submit(engine.tokenizer.chat_prompt(MESSAGES),
                           GenerationParams(max_tokens=n, ignore_eos=True))
    return [t async for c in stream for t in c.token_ids]


async def sse_events(resp: httpx.Response) -> AsyncIterator[str]:
    async for line in resp.aiter_lines():
        if line.startswith("data: "):
            yield line[6:]


async def test_chat_completion_streamed_and_not_give_the_same_answer(
        server: tuple[AsyncEngine, str]) -> None:
    engine, url = server
    want = await expected_ids(engine, 10)
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 10, "temperature": 0,
            "ignore_eos": True, "logprobs": True}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        plain = (await http.post("/v1/chat/completions", json=body)).json()
        events = []
        async with http.stream("POST", "/v1/chat/completions",
                               json={**body, "stream": True,
                                     "stream_options": {"include_usage": True}}) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            events = [e async for e in sse_events(resp)]
    choice = plain["choices"][0]
    assert plain["object"] == "chat.completion"
    assert choice["token_ids"] == want and choice["finish_reason"] == "length"
    assert choice["message"]["content"] == engine.tokenizer.decode(want)
    assert len(choice["logprobs"]["content"]) == 10
    assert all(c["logprob"] <= 0 for c in choice["logprobs"]["content"])
    assert plain["usage"]["completion_tokens"] == 10

    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    assert "".join(d["delta"].get("content", "") for d in deltas) == \
        choice["message"]["content"]
    assert [t for d in deltas for t in d.get("token_ids", [])] == want
    assert deltas[-1]["finish_reason"] == "length"
    assert len(deltas) >= 10  # really streamed, token by token
    assert chunks[-1]["usage"]["completion_tokens"] == 10


async def test_openai_http_client_streams_and_embeds_against_the_server(
        server: tuple[AsyncEngine, str]) -> None:
    engine, url = server
    want = await expected_ids(engine, 8)
    llm = OpenAIHTTPLLM(f"{url}/v1")  # the model name comes from /v1/models
    try:
        # temperature 0 + max_tokens; EOS may end it early, so compare against a prefix
        chunks = [c async for c in llm.stream_chat(MESSAGES, max_tokens=8)]
        vectors = await llm.embed(["a", "abc"])
    finally:
        await llm.close()
    ids = [t for c in chunks for t in c.token_ids]
    assert ids and ids == want[:len(ids)]
    assert sum(len(c.logprobs) for c in chunks) == len(ids)
    assert chunks[-1].finish_reason in ("stop", "length")
    assert vectors == [[1.0, 1.0], [3.0, 1.0]]


async def test_embeddings_base64_models_health_and_metrics(
        server: tuple[AsyncEngine, str]) -> None:
    _, url = server
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        emb = (await http.post("/v1/embeddings", json={
            "input": "abcd", "model": "x", "encoding_format": "base64"})).json()
        models = (await http.get("/v1/models")).json()
        health = await http.get("/healthz")
        metrics = await http.get("/metrics")
        bad = await http.post("/v1/chat/completions", json={"messages": []})
        bad_json = await http.post("/v1/chat/completions", content=b"{nope")
    raw = base64.b64decode(emb["data"][0]["embedding"])
    assert list(struct.unpack("<2f", raw)) == [4.0, 1.0]
    assert [m["id"] for m in models["data"]] == ["tiny", "tiny-embed"]
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert "engine_time_to_first_token_seconds" in metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_messages"
    assert bad_json.status_code == 400


async def test_full_queue_answers_429(server: tuple[AsyncEngine, str]) -> None:
    engine, url = server
    slow_down(engine, 0.02)
    prompt = engine.tokenizer.chat_prompt(MESSAGES)
    long = GenerationParams(max_tokens=200, ignore_eos=True)
    hogs = []
    for _ in range(3):  # 2 running + 1 waiting
        hogs.append(engine.submit(prompt, long))
        await asyncio.sleep(0.1)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            resp = await http.post("/v1/chat/completions",
                                   json={"messages": MESSAGES, "max_tokens": 2})
    finally:
        for hog in hogs:
            hog.cancel()
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "engine_busy"


async def test_client_disconnect_mid_stream_cancels_the_request(
        server: tuple[AsyncEngine, str]) -> None:
    engine, url = server
    slow_down(engine, 0.02)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http, http.stream(
            "POST", "/v1/chat/completions",
            json={"messages": MESSAGES, "max_tokens": 500, "ignore_eos": True,
                  "stream": True}) as resp:
        seen = 0
        async for _ in sse_events(resp):
            seen += 1
            if seen == 3:
                break
    for _ in range(200):
        if engine.core.sched.idle:
            break
        await asyncio.sleep(0.02)
    assert engine.core.sched.idle
    assert metric(engine, "engine_requests_total", finish_reason="cancelled") == 1
    assert metric(engine, "engine_generated_tokens_total") < 200

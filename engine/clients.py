"""Engine clients behind the bot's ``LLM`` Protocol (structurally; engine/ never imports bot/).

    InProcessLLM(engine)          the AsyncEngine in this process (``supportbot run``)
    RedisLLM.from_url(url)        shared engine workers behind a Redis Stream
    OpenAIHTTPLLM(base_url)       any OpenAI-compatible server: ours, vLLM, llama.cpp server

Each has ``stream_chat(messages, max_tokens, stop, temperature) -> AsyncIterator[Chunk]``,
``embed(texts) -> list[list[float]]`` and ``close()``. Only InProcessLLM needs torch, and it
imports nothing heavy itself: it is handed an engine someone else loaded.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import httpx
import redis.asyncio as aioredis

from engine.errors import EngineError
from engine.keys import EngineKeys
from engine.redis_protocol import (
    CHUNK,
    EMBEDDING,
    END,
    ERROR,
    OutputEntry,
    ReadReply,
    chat_request,
    embed_request,
)
from engine.requests import Chunk, EngineBusy, GenerationParams

if TYPE_CHECKING:
    from engine.async_engine import AsyncEngine

__all__ = ["Chunk", "InProcessLLM", "OpenAIHTTPLLM", "RedisLLM"]


class InProcessLLM:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def stream_chat(self, messages: Sequence[Mapping[str, str]], max_tokens: int = 256,
                    stop: Sequence[str] = (), temperature: float = 0.0,
                    ) -> AsyncIterator[Chunk]:
        return self.engine.stream_chat(messages, max_tokens, stop, temperature)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self.engine.embed(texts)

    async def health(self) -> dict[str, str]:
        """For `/support status`: where the engine runs and what it is doing now."""
        figures = self.engine.metrics.summary()
        return {"engine": f"in-process ({self.engine.model_name})",
                **{f"engine {k}": v for k, v in figures.items()}}

    async def close(self) -> None:
        await self.engine.close()


class AttemptMerger:
    """Turns a request's output stream, possibly written by several attempts, into one answer.

    A newer attempt restarts from scratch; what the client already passed on must not be
    repeated, so the new attempt's output is swallowed until it has caught up with what was
    sent, then streaming continues. Greedy decoding (and seeded sampling) regenerates the same
    tokens; if a restart ever disagrees with text already sent, the stream ends with an error
    rather than splicing two different answers together.
    """

    def __init__(self) -> None:
        self.attempt = 0
        self._sent_text = ""
        self._sent_ids: list[int] = []
        self._text = ""  # the current attempt's output so far
        self._ids: list[int] = []
        self._logprobs: list[float] = []

    def feed(self, entry: OutputEntry) -> Chunk | None:
        if entry.attempt < self.attempt:
            return None  # a late write from an attempt presumed dead
        if entry.attempt > self.attempt:
            self.attempt = entry.attempt
            self._text, self._ids, self._logprobs = "", [], []
        if entry.kind == ERROR:
            return Chunk("", finish_reason="error", error=str(entry.data.get("error")))
        if entry.kind not in (CHUNK, END):
            return None
        chunk = Chunk.from_json(entry.data)
        self._text += chunk.text
        self._ids += chunk.token_ids
        self._logprobs += chunk.logprobs
        n_ids = min(len(self._ids), len(self._sent_ids))
        n_text = min(len(self._text), len(self._sent_text))
        if self._ids[:n_ids] != self._sent_ids[:n_ids] or \
                self._text[:n_text] != self._sent_text[:n_text]:
            return Chunk("", finish_reason="error",
                         error="the engine restarted and produced a different answer")
        new_text = self._text[len(self._sent_text):]
        start = len(self._sent_ids)
        new_ids, new_lps = self._ids[start:], self._logprobs[start:]
        self._sent_text += new_text
        self._sent_ids += new_ids
        if entry.kind == END:
            return Chunk(new_text, tuple(new_ids), tuple(new_lps), chunk.finish_reason,
                         chunk.error)
        if new_text or new_ids:
            return Chunk(new_text, tuple(new_ids), tuple(new_lps))
        return None


class RedisLLM:
    """Submits to the shared request stream and follows the request's output stream."""

    def __init__(self, redis: aioredis.Redis, keys: EngineKeys | None = None, *,
                 timeout_s: float = 300.0, max_backlog: int = 1000,
                 block_ms: int = 1000) -> None:
        self.redis = redis  # decode_responses=True
        self.keys = keys or EngineKeys()
        self.timeout_s = timeout_s
        self.max_backlog = max_backlog
        self.block_ms = block_ms

    @classmethod
    def from_url(cls, url: str, prefix: str = "sb", **kwargs: Any) -> RedisLLM:
        return cls(aioredis.from_url(url, decode_responses=True), EngineKeys(prefix), **kwargs)

    async def stream_chat(self, messages: Sequence[Mapping[str, str]], max_tokens: int = 256,
                          stop: Sequence[str] = (), temperature: float = 0.0, *,
                          top_p: float = 1.0, seed: int | None = None, ignore_eos: bool = False,
                          request_id: str | None = None) -> AsyncIterator[Chunk]:
        params = GenerationParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                seed=seed, stop=tuple(stop), ignore_eos=ignore_eos)
        rid = request_id or uuid.uuid4().hex
        await self._submit(chat_request(rid, messages, params, self.timeout_s))
        merger = AttemptMerger()
        finished = False
        try:
            async for entry in self._entries(rid):
                chunk = merger.feed(entry)
                if chunk is None:
                    continue
                finished = chunk.finish_reason is not None
                yield chunk
                if finished:
                    return
            finished = True
            yield Chunk("", finish_reason="error",
                        error=f"no answer from the engine workers within {self.timeout_s}s")
        finally:
            await asyncio.shield(self._cleanup(rid, cancel=not finished))

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        rid = uuid.uuid4().hex
        await self._submit(embed_request(rid, texts))
        try:
            async for entry in self._entries(rid):
                if entry.kind == EMBEDDING:
                    return [[float(x) for x in v] for v in entry.data["vectors"]]
                if entry.kind == ERROR:
                    raise EngineError(f"embedding failed: {entry.data.get('error')}")
        finally:
            await asyncio.shield(self._cleanup(rid, cancel=False))
        raise EngineError(f"no embedding from the engine workers within {self.timeout_s}s")

    async def health(self) -> dict[str, str]:
        """For `/support status`: the shared workers' consumer group, as Redis sees it."""
        try:
            groups = await self.redis.xinfo_groups(self.keys.requests)
        except aioredis.ResponseError:  # no stream yet: no worker has ever started
            groups = []
        group = next((g for g in groups if g.get("name") == self.keys.group), None)
        if group is None:
            return {"engine": "redis workers: none has started (run `supportbot engine`)"}
        return {"engine": f"redis workers: {group.get('consumers', 0)} registered",
                "engine pending": f"{group.get('pending', 0)} in progress, "
                                  f"{group.get('lag') or 0} waiting"}

    async def close(self) -> None:
        await self.redis.aclose()

    async def _submit(self, fields: dict[str, str]) -> None:
        # Acknowledged entries are deleted by the workers, so the length is the backlog.
        if await self.redis.xlen(self.keys.requests) >= self.max_backlog:
            raise EngineBusy(f"{self.max_backlog} requests already wait for an engine worker")
        await self.redis.xadd(self.keys.requests, fields)  # type: ignore[arg-type]

    async def _entries(self, request_id: str) -> AsyncIterator[OutputEntry]:
        out, last = self.keys.output(request_id), "0-0"
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            reply = cast(ReadReply | None,
                         await self.redis.xread({out: last}, count=256, block=self.block_ms))
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    yield OutputEntry.parse(fields)

    async def _cleanup(self, request_id: str, cancel: bool) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            if cancel:  # the worker sees it on its next heartbeat and stops generating
                pipe.set(self.keys.cancel(request_id), "1", ex=600)
            pipe.delete(self.keys.output(request_id))
            await pipe.execute()


class OpenAIHTTPLLM:
    """An OpenAI-compatible server; ``base_url`` includes the version, e.g.
    ``http://127.0.0.1:8000/v1`` (like the openai package's ``base_url``)."""

    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 embed_model: str | None = None, timeout_s: float = 300.0,
                 logprobs: bool = True, client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model  # None: the first model the server lists (vLLM wants its exact name)
        self.embed_model = embed_model
        self.logprobs = logprobs
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(timeout=timeout_s, headers=headers)

    async def stream_chat(self, messages: Sequence[Mapping[str, str]], max_tokens: int = 256,
                          stop: Sequence[str] = (), temperature: float = 0.0,
                          ) -> AsyncIterator[Chunk]:
        body: dict[str, Any] = {"model": await self._model(),
                                "messages": [dict(m) for m in messages],
                                "max_tokens": max_tokens, "temperature": temperature,
                                "stream": True}
        if stop:
            body["stop"] = list(stop)
        if self.logprobs:
            body["logprobs"] = True
        async with self._client.stream("POST", f"{self.base_url}/chat/completions",
                                       json=body) as resp:
            if resp.status_code == 429:
                raise EngineBusy(f"{self.base_url}: server busy (429)")
            if resp.status_code >= 400:
                detail = (await resp.aread()).decode(errors="replace")[:500]
                raise EngineError(f"{self.base_url}: HTTP {resp.status_code}: {detail}")
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunk = _sse_chunk(json.loads(data))
                if chunk is not None:
                    yield chunk
                    if chunk.finish_reason is not None:
                        return

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        model = self.embed_model or await self._model()
        resp = await self._client.post(f"{self.base_url}/embeddings",
                                       json={"model": model, "input": list(texts)})
        if resp.status_code == 429:
            raise EngineBusy(f"{self.base_url}: server busy (429)")
        if resp.status_code >= 400:
            raise EngineError(f"{self.base_url}: HTTP {resp.status_code}: {resp.text[:500]}")
        data = sorted(resp.json()["data"], key=lambda d: d["index"])
        return [[float(x) for x in d["embedding"]] for d in data]

    async def health(self) -> dict[str, str]:
        """For `/support status`: whether the server answers and which model it serves."""
        try:
            model = await self._model()
        except (httpx.HTTPError, EngineError) as exc:
            return {"engine": f"http {self.base_url}: NOT REACHABLE ({type(exc).__name__})"}
        return {"engine": f"http {self.base_url}: ok ({model})"}

    async def close(self) -> None:
        await self._client.aclose()

    async def _model(self) -> str:
        if self.model is None:
            resp = await self._client.get(f"{self.base_url}/models")
            if resp.status_code >= 400:
                raise EngineError(f"{self.base_url}/models: HTTP {resp.status_code}")
            models = resp.json().get("data") or []
            if not models:
                raise EngineError(f"{self.base_url}/models lists no model")
            self.model = str(models[0]["id"])
        return self.model


def _sse_chunk(obj: Mapping[str, Any]) -> Chunk | None:
    """One ``chat.completion.chunk`` (or an error event) as a Chunk; None if it carries nothing."""
    if "error" in obj:
        error = obj["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        return Chunk("", finish_reason="error", error=str(message))
    if not obj.get("choices"):
        return None  # e.g. a usage-only chunk
    choice = obj["choices"][0]
    text = (choice.get("delta") or {}).get("content") or ""
    content = (choice.get("logprobs") or {}).get("content") or []
    logprobs = tuple(float(c["logprob"]) for c in content)
    token_ids = tuple(int(t) for t in choice.get("token_ids") or ())  # our server's extension
    finish = choice.get("finish_reason")
    if not text and not logprobs and not token_ids and finish is None:
        return None
    return Chunk(text, token_ids, logprobs, finish)

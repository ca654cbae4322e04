"""AsyncEngine: continuous batching in a model thread, async token streams on the event loop.

    engine = AsyncEngine(model, tokenizer, EngineConfig(), embedder=embedder)
    async for chunk in engine.stream_chat([{"role": "user", "content": "hi"}]):
        print(chunk.text, end="")

The model runs in one dedicated thread, so the asyncio loop (Slack/Discord sockets, HTTP,
Redis) never waits on a matmul; torch releases the GIL inside its kernels. The two sides meet
through a command queue (submit / cancel / embed, loop -> thread) and
``loop.call_soon_threadsafe`` (chunks, thread -> loop), once per step for all requests.

New requests join the running batch between decode steps, cancelling frees the KV slot
before the next step, and a full waiting queue raises :class:`EngineBusy` at submit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch

from engine.core import Delivery, EngineConfig, EngineCore, TextEmbedder
from engine.errors import ContextLengthExceeded, EngineError
from engine.generate import TextAssembler
from engine.llama import LlamaForCausalLM
from engine.metrics import EngineMetrics
from engine.requests import Chunk, EngineBusy, GenerationParams
from engine.scheduler import Sequence as Seq
from engine.threads import release_openmp_threads
from engine.tokenizer import Tokenizer

log = logging.getLogger(__name__)

__all__ = ["AsyncEngine", "Chunk", "EngineBusy", "EngineConfig", "GenerationParams",
           "RequestStream"]

# The idle thread wakes this often even without commands, to keep the tokens/s gauge honest.
_IDLE_WAKE_S = 0.5


class RequestStream:
    """The chunks of one request, as an async iterator. Leaving early (``cancel()``,
    ``aclose()``, ``async with`` exit, or the consuming task being cancelled) frees the
    request's KV slot for the next waiting request."""

    def __init__(self, engine: AsyncEngine, request_id: str) -> None:
        self.request_id = request_id
        self._engine = engine
        self._queue: asyncio.Queue[Chunk] = asyncio.Queue()
        self._done = False

    def _put(self, chunk: Chunk) -> None:
        self._queue.put_nowait(chunk)

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> Chunk:
        if self._done:
            raise StopAsyncIteration
        try:
            chunk = await self._queue.get()
        except asyncio.CancelledError:
            self.cancel()
            raise
        if chunk.finish_reason is not None:
            self._done = True
        return chunk

    def cancel(self) -> None:
        if not self._done:
            self._done = True
            self._engine._send(("cancel", self.request_id))

    async def aclose(self) -> None:
        self.cancel()

    async def __aenter__(self) -> RequestStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.cancel()


@dataclass
class _EmbedJob:
    texts: list[str]
    future: asyncio.Future[list[list[float]]]


class AsyncEngine:
    def __init__(self, model: LlamaForCausalLM, tokenizer: Tokenizer,
                 config: EngineConfig | None = None, embedder: TextEmbedder | None = None,
                 metrics: EngineMetrics | None = None, model_name: str = "supportbot") -> None:
        self.config = config or EngineConfig()
        self.metrics = metrics or EngineMetrics()
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.core = EngineCore(model, tokenizer, self.config, self.metrics, embedder)
        self._commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)

    # -- lifecycle -----------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._thread is None:
            if self._stopping:
                raise EngineError("the engine has been closed")
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, name="engine-model", daemon=True)
            self._thread.start()

    async def close(self) -> None:
        """Stop the model thread; unfinished requests end with finish_reason "cancelled"."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    async def __aenter__(self) -> AsyncEngine:
        self._ensure_started()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def has_embedder(self) -> bool:
        return self.core.embedder is not None

    # -- requests ------------------------------------------------------------------------------
    def submit(self, prompt: Sequence[int], params: GenerationParams | None = None, *,
               request_id: str | None = None, timeout_s: float | None = None) -> RequestStream:
        """Queue a prompt (token ids); raises EngineBusy when the waiting queue is full and
        ContextLengthExceeded when the prompt leaves no room for an answer."""
        params = params or GenerationParams()
        if not prompt:
            raise ValueError("empty prompt")
        if len(prompt) >= self.core.max_len:
            raise ContextLengthExceeded(
                f"prompt of {len(prompt)} tokens does not fit the {self.core.max_len}-token "
                "sequence length")
        # Reading the deque's length from this thread is safe (GIL); a slight overshoot under
        # a burst is fine for backpressure.
        if len(self.core.sched.waiting) + self._commands.qsize() >= self.config.max_queue:
            self.metrics.rejected.inc()
            raise EngineBusy(f"engine queue is full ({self.config.max_queue} waiting)")
        self._ensure_started()
        rid = request_id or f"req-{next(self._ids)}"
        stream = RequestStream(self, rid)
        now = time.monotonic()
        seq = Seq(request_id=rid, prompt=list(prompt), params=params,
                  text=TextAssembler(self.tokenizer, params.stop), arrival=now,
                  deadline=None if timeout_s is None else now + timeout_s, sink=stream,
                  generator=self._generator(params))
        self._send(("add", seq))
        return stream

    async def stream_chat(self, messages: Sequence[Mapping[str, Any]], max_tokens: int = 256,
                          stop: Sequence[str] = (), temperature: float = 0.0, *,
                          top_p: float = 1.0, top_k: int = 0, seed: int | None = None,
                          timeout_s: float | None = None,
                          request_id: str | None = None) -> AsyncIterator[Chunk]:
        """The bot's ``LLM.stream_chat``: chat-formatted, streamed, cancelled on early exit."""
        prompt = self.tokenizer.chat_prompt(messages)
        params = GenerationParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                top_k=top_k, seed=seed, stop=tuple(stop))
        stream = self.submit(prompt, params, request_id=request_id, timeout_s=timeout_s)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            stream.cancel()

    def cancel(self, request_id: str) -> None:
        self._send(("cancel", request_id))

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit vectors for ``texts``; concurrent calls are embedded in one batch."""
        if self.core.embedder is None:
            raise EngineError("this engine was started without an embedding model")
        if not texts:
            return []
        self._ensure_started()
        future: asyncio.Future[list[list[float]]] = asyncio.get_running_loop().create_future()
        self._send(("embed", _EmbedJob(list(texts), future)))
        return await future

    def _send(self, command: tuple[Any, ...]) -> None:
        # Only the model thread should keep OpenMP workers (see engine.threads): the calling
        # thread may have used torch itself (loading the model, a baseline), so its pool goes.
        release_openmp_threads()
        self._commands.put(command)
        self._wake.set()

    def _generator(self, params: GenerationParams) -> torch.Generator | None:
        if params.greedy:
            return None
        seed = params.seed if params.seed is not None else random.getrandbits(63)
        return torch.Generator(device=self.core.model.device).manual_seed(seed)

    # -- the model thread ----------------------------------------------------------------------
    def _run(self) -> None:
        if self.config.threads:
            # On a CPU shared with other work, fewer threads than cores avoids OpenMP workers
            # spinning against each other; it is process-wide, as the engine owns the process.
            torch.set_num_threads(self.config.threads)
        embeds: list[_EmbedJob] = []
        while not self._stopping:
            out = self._drain(embeds)
            if embeds:
                self._run_embeds(embeds)
                embeds = []
            if not self.core.sched.idle:
                try:
                    out += self.core.step()
                except Exception as exc:  # a failed forward must not kill every later request
                    log.exception("engine step failed")
                    out += self.core.fail_all(f"engine error: {exc}")
            self._publish(out)
            if self.core.sched.idle:
                self.metrics.idle(time.monotonic())
                self._wake.clear()
                if self._commands.empty() and not self._stopping:
                    release_openmp_threads()  # idle: let other threads' torch run at full speed
                    self._wake.wait(_IDLE_WAKE_S)
        self._drain(embeds)
        self._fail_embeds(embeds, "engine shut down")
        self._publish(self.core.cancel_all())

    def _drain(self, embeds: list[_EmbedJob]) -> list[Delivery]:
        out: list[Delivery] = []
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return out
            kind = command[0]
            if kind == "add":
                self.core.sched.add(command[1])
            elif kind == "cancel":
                delivery = self.core.cancel(command[1])
                if delivery is not None:
                    out.append(delivery)
            elif kind == "embed":
                embeds.append(command[1])

    def _run_embeds(self, jobs: list[_EmbedJob]) -> None:
        texts = [t for job in jobs for t in job.texts]
        try:
            vectors = self.core.embed(texts)
        except Exception as exc:
            log.exception("embedding batch failed")
            self._fail_embeds(jobs, f"embedding failed: {exc}")
            return
        start = 0
        for job in jobs:
            part = vectors[start:start + len(job.texts)]
            start += len(job.texts)
            self._call_soon(_resolve, job.future, part)

    def _fail_embeds(self, jobs: list[_EmbedJob], message: str) -> None:
        for job in jobs:
            self._call_soon(_reject, job.future, EngineError(message))

    def _publish(self, deliveries: list[Delivery]) -> None:
        if deliveries:
            self._call_soon(_deliver, deliveries)

    def _call_soon(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None
        # RuntimeError: the loop is closed, so nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(fn, *args)


def _deliver(deliveries: list[Delivery]) -> None:
    for sink, chunk in deliveries:
        sink._put(chunk)


def _resolve(future: asyncio.Future[list[list[float]]], value: list[list[float]]) -> None:
    if not future.done():
        future.set_result(value)


def _reject(future: asyncio.Future[list[list[float]]], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)


def load_engine(model: str | None = None, embed_model: str | None = None,
                config: EngineConfig | None = None, embeddings: bool = True) -> AsyncEngine:
    """Load the generation model (``$SUPPORTBOT_MODEL`` or the bundled SmolLM2) and, unless
    ``embeddings`` is False, the embedding model, and wrap them in an AsyncEngine."""
    from pathlib import Path

    from engine.embedder import load_embedder
    from engine.generator import load_generator

    gen = load_generator(model)
    embedder = load_embedder(embed_model) if embeddings else None
    return AsyncEngine(gen.model, gen.tokenizer, config, embedder=embedder,
                       model_name=Path(gen.path).stem)

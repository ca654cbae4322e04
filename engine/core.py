"""The engine core: one step of continuous batching over a preallocated KV cache.

Thread-confined: only the engine's model thread calls into it (see ``async_engine``). A step
runs at most two forwards, one decode forward ``[B, 1]`` for every sequence already
generating and one prefill forward ``[Bp, T]`` for the next prompt chunk(s). Keeping them apart
avoids padding every decode row to the prefill chunk's width.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from engine.batch_sampling import sample_batch
from engine.kv_manager import KVPlan, SlotPool, plan_kv
from engine.llama import LlamaForCausalLM
from engine.metrics import EngineMetrics
from engine.prefix_cache import PrefixCache
from engine.requests import CANCELLED, ERROR, LENGTH, STOP, Chunk
from engine.scheduler import Scheduler
from engine.scheduler import Sequence as Seq
from engine.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class TextEmbedder(Protocol):
    """What the engine needs of an embedder (``engine.embedder.Embedder`` has it)."""

    def embed(self, texts: Sequence[str]) -> torch.Tensor: ...  # [N, dim]


@dataclass(frozen=True)
class EngineConfig:
    kv_budget_bytes: int = 2 << 30  # KV cache for running sequences + prefix cache
    max_len: int = 2048  # positions per sequence (prompt + answer)
    max_batch: int = 32  # running sequences at most
    max_queue: int = 256  # waiting requests before EngineBusy
    prefill_chunk: int | None = None  # prompt tokens per step; None = by device
    prefix_slots: int = 4  # KV slots kept for the prefix cache (0 = off)
    prefix_min_match: int = 8  # shorter shared prefixes are recomputed
    threads: int | None = None  # torch intra-op threads (process-wide); None = torch's choice

    def chunk_for(self, device: torch.device) -> int:
        # CPU: ~0.3 GFLOP per token for a 135M model, so a 256-token chunk costs a few hundred
        # ms, about the longest pause running streams should see; a GPU does thousands as fast.
        return self.prefill_chunk or (256 if device.type == "cpu" else 2048)


Delivery = tuple[Any, Chunk]  # (sequence's sink, chunk)


class EngineCore:
    def __init__(self, model: LlamaForCausalLM, tokenizer: Tokenizer,
                 config: EngineConfig, metrics: EngineMetrics,
                 embedder: TextEmbedder | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.metrics = metrics
        self.embedder = embedder
        self.eos = frozenset(tokenizer.eos_token_ids)
        self.plan: KVPlan = plan_kv(model.config, model.dtype, config.kv_budget_bytes,
                                    config.max_len, config.max_batch, config.prefix_slots)
        # Running slots first (0..running-1), so live sequences are usually one contiguous slice.
        self.cache = model.new_cache(self.plan.total, self.plan.max_len)
        prefix = PrefixCache(range(self.plan.running, self.plan.total), self.cache.copy_prefix,
                             config.prefix_min_match)
        self.sched = Scheduler(SlotPool(range(self.plan.running)), prefix,
                               config.chunk_for(model.device))
        metrics.kv_slots_free.set(self.plan.running)

    @property
    def max_len(self) -> int:
        return self.plan.max_len

    # -- one step ------------------------------------------------------------------------------
    def step(self) -> list[Delivery]:
        out: list[Delivery] = []
        now = time.monotonic()
        for seq in self.sched.expired(now):
            out.append(self._finish(seq, ERROR, error="deadline exceeded"))
        self._count_prefix(self.sched.admit())
        decode = self.sched.decode_rows()
        if decode:
            out += self._decode(decode)
        plan = self.sched.prefill_plan()
        if plan.rows:
            out += self._prefill(plan.rows)
        self._update_gauges()
        return out

    def cancel(self, request_id: str) -> Delivery | None:
        seq = self.sched.find(request_id)
        return None if seq is None else self._finish(seq, CANCELLED)

    def cancel_all(self) -> list[Delivery]:
        return [self._finish(s, CANCELLED) for s in (*self.sched.running, *self.sched.waiting)]

    def fail_all(self, error: str) -> list[Delivery]:
        seqs = [*self.sched.running, *self.sched.waiting]
        return [self._finish(s, ERROR, error=error) for s in seqs]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        assert self.embedder is not None
        vectors = self.embedder.embed(texts)  # [N, dim]
        self.metrics.embed_batches.inc()
        self.metrics.embed_texts.inc(len(texts))
        return [[float(x) for x in row] for row in vectors.float().cpu().tolist()]

    # -- forwards ------------------------------------------------------------------------------
    def _decode(self, rows: list[Seq]) -> list[Delivery]:
        device = self.model.device
        ids = torch.tensor([[s.last_token] for s in rows], device=device)  # [B, 1]
        logits = self.model(ids, self.cache, start_pos=[s.cached for s in rows],
                            slots=[s.slot for s in rows], last_only=True,
                            shared_prefix=self.sched.shared_prefix_groups(rows))  # [B, V]
        for s in rows:
            s.cached += 1
        return self._emit(rows, logits)

    def _prefill(self, rows: list[tuple[Seq, int]]) -> list[Delivery]:
        device = self.model.device
        width = max(n for _, n in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)  # [Bp, T], right-padded
        for b, (seq, n) in enumerate(rows):
            ids[b, :n] = torch.tensor(seq.prompt[seq.cached:seq.cached + n])
        logits = self.model(ids.to(device), self.cache, start_pos=[s.cached for s, _ in rows],
                            slots=[s.slot for s, _ in rows], lengths=[n for _, n in rows],
                            last_only=True)  # [Bp, V]
        self.metrics.prompt_tokens.inc(sum(n for _, n in rows))
        done = set(self.sched.prefilled(rows))
        keep = [b for b, (s, _) in enumerate(rows) if s in done]
        if not keep:
            return []
        return self._emit([rows[b][0] for b in keep], logits[keep])

    # -- tokens -> chunks ----------------------------------------------------------------------
    def _emit(self, rows: list[Seq], logits: torch.Tensor) -> list[Delivery]:
        tokens, logprobs = sample_batch(logits, [s.sampling for s in rows],
                                        [s.generator for s in rows],
                                        [s.history() if s.params.repetition_penalty != 1.0
                                         else () for s in rows])
        now = time.monotonic()
        self.metrics.count_tokens(len(rows), now)
        out = []
        for seq, tok, lp in zip(rows, tokens, logprobs, strict=True):
            if seq.first_token_at is None:
                seq.first_token_at = now
                self.metrics.ttft.observe(now - seq.arrival)
            out.append(self._advance(seq, tok, lp))
        return out

    def _advance(self, seq: Seq, token: int, logprob: float) -> Delivery:
        if token in self.eos and not seq.params.ignore_eos:
            return self._finish(seq, STOP)
        seq.output.append(token)
        text = seq.text.push(token)
        if seq.text.stopped:
            return self._finish(seq, STOP, text, (token,), (logprob,))
        limit = min(seq.params.max_tokens, self.max_len - len(seq.prompt))
        if len(seq.output) >= limit:
            return self._finish(seq, LENGTH, text, (token,), (logprob,))
        return seq.sink, Chunk(text, (token,), (logprob,))

    def _finish(self, seq: Seq, reason: str, text: str = "", token_ids: tuple[int, ...] = (),
                logprobs: tuple[float, ...] = (), error: str | None = None) -> Delivery:
        """End a sequence and free its slot now; the last chunk carries what text remains
        (never the beginning of a stop string, even when the answer was cut by length)."""
        if reason in (STOP, LENGTH):
            text += seq.text.finish()
        self.sched.remove(seq)
        self.metrics.requests.labels(finish_reason=reason).inc()
        return seq.sink, Chunk(text, token_ids, logprobs, reason, error)

    # -- metrics -------------------------------------------------------------------------------
    def _count_prefix(self, admitted: list[Seq]) -> None:
        if not admitted:
            return
        stats = self.sched.prefix.stats
        self.metrics.prefix_lookups.inc(len(admitted))
        self.metrics.prefix_hits.inc(sum(1 for s in admitted if s.cached > 0))
        if stats.prompt_tokens:
            self.metrics.prefix_hit_rate.set(stats.hit_tokens / stats.prompt_tokens)

    def _update_gauges(self) -> None:
        self.metrics.queue_depth.set(len(self.sched.waiting))
        self.metrics.running.set(len(self.sched.running))
        self.metrics.kv_slots_free.set(self.sched.slots.n_free)

"""Which sequences run in the next engine step: admission, chunked prefill, decode.

Pure bookkeeping, no tensors: the engine core asks for a plan, runs the forwards, and reports
back. All of it is confined to the engine's model thread.

Policy, in order, every step:
  1. Drop requests past their deadline (waiting or running).
  2. Admit waiting requests while a slot is free (FIFO). A request whose prompt shares a long
     prefix with a prompt being prefilled right now waits one or two steps for that prefill
     to finish and land in the prefix cache, instead of computing the same prefix again.
  3. Decode: every sequence that has its prompt cached advances one token.
  4. Prefill: sequences still reading their prompt get the next chunk, within a token budget,
     so a long prompt never stalls running streams for more than one chunk.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.batch_sampling import row_params
from engine.generate import TextAssembler
from engine.kv_manager import SlotPool
from engine.prefix_cache import PrefixCache, Restored, common_prefix_len
from engine.requests import GenerationParams
from engine.sampling import SamplingParams


class State(enum.Enum):
    WAITING = "waiting"
    PREFILL = "prefill"
    DECODE = "decode"
    DONE = "done"


@dataclass(eq=False)
class Sequence:
    """One request inside the engine."""

    request_id: str
    prompt: list[int]
    params: GenerationParams
    text: TextAssembler  # detokenizer that holds back partial stop strings
    arrival: float  # time.monotonic() at submit
    deadline: float | None  # monotonic; None = no deadline
    sink: Any = None  # opaque to the engine thread: the asyncio side's delivery target
    generator: torch.Generator | None = None
    state: State = State.WAITING
    slot: int = -1
    cached: int = 0  # positions of this sequence already in its slot's KV cache
    output: list[int] = field(default_factory=list)
    first_token_at: float | None = None
    # Lineage of this slot's first positions (engine.prefix_cache): identical, for
    # restored.origin_len positions, in every sequence of the same origin.
    restored: Restored = field(default_factory=Restored)
    sampling: SamplingParams = field(init=False)  # params in the form the sampler takes

    def __post_init__(self) -> None:
        self.sampling = row_params(self.params)

    @property
    def to_prefill(self) -> int:
        return len(self.prompt) - self.cached

    @property
    def last_token(self) -> int:
        return self.output[-1]

    def history(self) -> list[int]:
        return self.prompt + self.output


@dataclass(frozen=True)
class PrefillPlan:
    rows: list[tuple[Sequence, int]]  # (sequence, tokens of its prompt in this chunk)


class Scheduler:
    def __init__(self, slots: SlotPool, prefix: PrefixCache, prefill_budget: int,
                 defer_min_shared: int = 32, min_shared_prefix: int = 32) -> None:
        self.slots = slots
        self.prefix = prefix
        self.prefill_budget = prefill_budget
        self.defer_min_shared = defer_min_shared
        self.min_shared_prefix = min_shared_prefix  # shorter shared prefixes: not worth a group
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    # -- intake --------------------------------------------------------------------------------
    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def find(self, request_id: str) -> Sequence | None:
        for seq in (*self.running, *self.waiting):
            if seq.request_id == request_id:
                return seq
        return None

    def remove(self, seq: Sequence) -> None:
        """Finish, cancel or expire: the slot is free for the very next admission."""
        if seq.state is State.WAITING:
            self.waiting.remove(seq)
        elif seq.state is not State.DONE:
            self.running.remove(seq)
            self.slots.release(seq.slot)
        seq.state = State.DONE

    def expired(self, now: float) -> list[Sequence]:
        return [s for s in (*self.waiting, *self.running)
                if s.deadline is not None and now >= s.deadline]

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    # -- admission -----------------------------------------------------------------------------
    def admit(self) -> list[Sequence]:
        admitted: list[Sequence] = []
        for seq in list(self.waiting):
            if self.slots.n_free == 0:
                break
            if self._should_wait_for_prefix(seq):
                continue
            slot = self.slots.acquire()
            assert slot is not None
            self.waiting.remove(seq)
            seq.slot, seq.state = slot, State.PREFILL
            if self.prefix.enabled:
                seq.restored = self.prefix.restore(seq.prompt, slot)
                seq.cached = seq.restored.length
            self.running.append(seq)
            admitted.append(seq)
        return admitted

    def _should_wait_for_prefix(self, seq: Sequence) -> bool:
        if not self.prefix.enabled:
            return False
        have = self.prefix.best_match(seq.prompt)
        for other in self.running:
            if other.state is State.PREFILL:
                shared = min(common_prefix_len(other.prompt, seq.prompt), len(seq.prompt) - 1)
                if shared - have >= self.defer_min_shared:
                    return True
        return False

    # -- planning ------------------------------------------------------------------------------
    def decode_rows(self) -> list[Sequence]:
        # Ordered by slot: when the slots are 0..B-1 the decoder reads them as one slice.
        return sorted((s for s in self.running if s.state is State.DECODE), key=lambda s: s.slot)

    def shared_prefix_groups(self, rows: list[Sequence]) -> list[tuple[list[int], int]]:
        """Groups ``(row indices, L)`` of decode rows whose first L positions are copies of one
        prefix-cache entry, for the decoder to read once (``LlamaForCausalLM.forward``)."""
        by_origin: dict[int, list[int]] = {}
        for i, seq in enumerate(rows):
            origin = seq.restored.origin
            if origin is not None and seq.restored.origin_len >= self.min_shared_prefix:
                by_origin.setdefault(origin, []).append(i)
        return [(members, min(rows[i].restored.origin_len for i in members))
                for members in by_origin.values() if len(members) > 1]

    def prefill_plan(self) -> PrefillPlan:
        """Rows are right-padded to the longest chunk, so the budget counts padded tokens."""
        rows: list[tuple[Sequence, int]] = []
        width = 0
        for seq in self.running:
            if seq.state is not State.PREFILL:
                continue
            n = min(seq.to_prefill, self.prefill_budget)
            new_width = max(width, n)
            if rows and (len(rows) + 1) * new_width > self.prefill_budget:
                continue  # a shorter one further on may still fit
            rows.append((seq, n))
            width = new_width
        return PrefillPlan(rows)

    def prefilled(self, rows: Iterable[tuple[Sequence, int]]) -> list[Sequence]:
        """Record a chunk as cached; returns the sequences whose whole prompt is now cached."""
        done = []
        for seq, n in rows:
            seq.cached += n
            if seq.to_prefill == 0:
                seq.state = State.DECODE
                entry = self.prefix.insert(seq.prompt, seq.slot, seq.restored)
                if seq.restored.origin is None and entry is not None:
                    seq.restored = entry  # it computed the entry's origin itself
                done.append(seq)
        return done

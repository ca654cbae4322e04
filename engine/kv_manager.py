"""KV-cache memory: how many sequence slots a byte budget buys, and who holds which slot.

The decoder's cache is preallocated as ``[layers, slots, kv_heads, max_len, head_dim]`` for
keys and again for values, so memory is fixed at start-up and never fragments. A request owns
one slot from admission to its last token; freeing it is O(1) and makes the slot usable by the
next waiting request in the very next step (nothing needs zeroing: positions past a sequence's
length are masked, and a new owner overwrites from position 0).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import torch

from engine.config import LlamaConfig


def kv_bytes_per_token(config: LlamaConfig, dtype: torch.dtype) -> int:
    """Keys + values of one token across all layers."""
    elem = torch.empty((), dtype=dtype).element_size()
    return 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * elem


@dataclass(frozen=True)
class KVPlan:
    """How the budget is split: ``running`` slots for live sequences, ``prefix`` for the cache."""

    max_len: int
    running: int
    prefix: int
    bytes_per_slot: int

    @property
    def total(self) -> int:
        return self.running + self.prefix

    @property
    def total_bytes(self) -> int:
        return self.total * self.bytes_per_slot


def plan_kv(config: LlamaConfig, dtype: torch.dtype, budget_bytes: int, max_len: int,
            max_batch: int, prefix_slots: int) -> KVPlan:
    """Size the cache from a memory budget; at least one running slot or a clear error."""
    max_len = min(max_len, config.max_position_embeddings)
    per_slot = kv_bytes_per_token(config, dtype) * max_len
    total = budget_bytes // per_slot
    if total < 1:
        raise ValueError(f"KV budget of {budget_bytes} bytes is below one sequence of "
                         f"{max_len} tokens ({per_slot} bytes); raise it or lower max_len")
    # The prefix cache never starves live requests: it gets at most a quarter of the slots.
    prefix = min(prefix_slots, total // 4)
    running = min(total - prefix, max_batch)
    return KVPlan(max_len=max_len, running=running, prefix=prefix, bytes_per_slot=per_slot)


class SlotPool:
    """Free-list of slot indices; hands out the lowest free one first, so live sequences
    tend to sit in slots 0..B-1 and the decoder can read them as one contiguous slice."""

    def __init__(self, slots: range) -> None:
        self._all = slots
        self._free = list(slots)
        heapq.heapify(self._free)

    @property
    def n_free(self) -> int:
        return len(self._free)

    @property
    def n_total(self) -> int:
        return len(self._all)

    def acquire(self) -> int | None:
        return heapq.heappop(self._free) if self._free else None

    def release(self, slot: int) -> None:
        if slot not in self._all or slot in self._free:
            raise ValueError(f"slot {slot} released twice or never owned")
        heapq.heappush(self._free, slot)

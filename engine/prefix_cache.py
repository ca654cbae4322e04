"""Prefix cache: prompts that start alike (the shared system + knowledge prompt) are computed once.

A few KV slots are set aside. After a request's prompt has been prefilled, its keys/values are
copied into one of them with the prompt's token ids. A later request looks for the entry with
the longest common token prefix, copies those positions into its own slot (a memcpy of
``length`` positions, far cheaper than recomputing them) and prefills only the rest.

Entries are evicted least-recently-used, so an entry that every request hits (the system
prompt) stays while one-off prompts cycle through the remaining slots.

Lineage, for the decoder (``engine.prefix_attention``): every computed prefix gets an origin id
that is never reused, and every entry remembers which origin its first ``origin_len``
positions are bit-identical copies of. A prompt computed from scratch starts a new origin; an
entry inserted by a sequence that had restored part of its prompt inherits that part's
origin. Sequences with the same origin therefore share identical keys/values for the shorter
of their two ``origin_len``, even when they restored from different entries (the system
prompt alone, or the system prompt plus an earlier identical question), and the decoder reads
that part once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# copy_prefix(src_slot, dst_slot, length): the KV cache's own copy.
CopyFn = Callable[[int, int, int], None]


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class _Entry:
    slot: int
    tokens: tuple[int, ...]
    last_used: int
    origin: int  # positions [0, origin_len) are bit-identical in everything of this origin
    origin_len: int


@dataclass(frozen=True)
class Restored:
    """What a lookup copied: ``length`` positions, of which the first ``origin_len`` are
    identical to everything else of ``origin`` (None: nothing was copied)."""

    length: int = 0
    origin: int | None = None
    origin_len: int = 0


@dataclass
class PrefixStats:
    lookups: int = 0
    hits: int = 0
    prompt_tokens: int = 0
    hit_tokens: int = 0


class PrefixCache:
    def __init__(self, slots: Sequence[int], copy: CopyFn, min_match: int = 8) -> None:
        self._free = list(slots)
        self._entries: list[_Entry] = []
        self._copy = copy
        self._clock = 0
        self._next_id = 1
        self.min_match = min_match
        self.stats = PrefixStats()

    @property
    def enabled(self) -> bool:
        return bool(self._free or self._entries)

    def best_match(self, tokens: Sequence[int]) -> int:
        """Tokens a lookup would reuse now (no side effects); used to decide whether to wait
        for a prompt being prefilled that would give a longer match."""
        return max((self._usable(e, tokens) for e in self._entries), default=0)

    def restore(self, tokens: Sequence[int], dst_slot: int) -> Restored:
        """Copy the longest cached prefix of ``tokens`` into ``dst_slot``; returns its length and
        lineage (``Restored()`` on a miss).

        At most ``len(tokens) - 1`` positions are reused: the last prompt token must still run
        through the model to produce the logits of the first generated token.
        """
        self.stats.lookups += 1
        self.stats.prompt_tokens += len(tokens)
        best: _Entry | None = None
        best_len = 0
        for entry in self._entries:
            n = self._usable(entry, tokens)
            if n > best_len:
                best, best_len = entry, n
        if best is None:
            return Restored()
        self._clock += 1
        best.last_used = self._clock
        self._copy(best.slot, dst_slot, best_len)
        self.stats.hits += 1
        self.stats.hit_tokens += best_len
        return Restored(best_len, best.origin, min(best_len, best.origin_len))

    def insert(self, tokens: Sequence[int], src_slot: int,
               restored: Restored = Restored()) -> Restored | None:
        """Remember the first ``len(tokens)`` positions of ``src_slot`` (already computed; its
        first ``restored.length`` came from this cache). Returns the new entry's lineage, or
        None when nothing was stored."""
        if len(tokens) < self.min_match or not self.enabled:
            return None
        key = tuple(tokens)
        if any(common_prefix_len(e.tokens, key) >= len(key) for e in self._entries):
            return None  # an existing entry already covers all of it
        if self._free:
            slot = self._free.pop()
        else:
            victim = min(self._entries, key=lambda e: e.last_used)
            self._entries.remove(victim)
            slot = victim.slot
        self._copy(src_slot, slot, len(key))
        self._clock += 1
        if restored.origin is not None:  # its start is a copy: same origin, as far as that goes
            origin, origin_len = restored.origin, restored.origin_len
        else:  # computed from scratch: a new origin
            origin, origin_len = self._next_id, len(key)
            self._next_id += 1
        self._entries.append(_Entry(slot, key, self._clock, origin, origin_len))
        return Restored(len(key), origin, origin_len)

    def _usable(self, entry: _Entry, tokens: Sequence[int]) -> int:
        n = min(common_prefix_len(entry.tokens, tokens), len(tokens) - 1)
        return n if n >= self.min_match else 0

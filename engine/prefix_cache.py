"""Prefix cache: prompts that start alike (the shared system + knowledge prompt) are computed once.

A few KV slots are set aside. After a request's prompt has been prefilled, its keys/values are
copied into one of them with the prompt's token ids. A later request looks for the entry with
the longest common token prefix, copies those positions into its own slot (a memcpy of
``length`` positions, far cheaper than recomputing them) and prefills only the rest.

Entries are evicted least-recently-used, so an entry that every request hits (the system
prompt) stays while one-off prompts cycle through the remaining slots.

Every entry has an id that is never reused. Sequences that restored from the same entry hold
identical keys/values for the positions they copied, which lets the decoder read that shared
part once for all of them (``engine.prefix_attention``).
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
    id: int


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

    def restore(self, tokens: Sequence[int], dst_slot: int) -> tuple[int, int | None]:
        """Copy the longest cached prefix of ``tokens`` into ``dst_slot``; returns its length and
        the id of the entry it came from (``(0, None)`` on a miss).

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
            return 0, None
        self._clock += 1
        best.last_used = self._clock
        self._copy(best.slot, dst_slot, best_len)
        self.stats.hits += 1
        self.stats.hit_tokens += best_len
        return best_len, best.id

    def insert(self, tokens: Sequence[int], src_slot: int) -> int | None:
        """Remember the first ``len(tokens)`` positions of ``src_slot`` (already computed);
        returns the new entry's id, or None when nothing was stored."""
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
        entry = _Entry(slot, key, self._clock, self._next_id)
        self._next_id += 1
        self._entries.append(entry)
        return entry.id

    def _usable(self, entry: _Entry, tokens: Sequence[int]) -> int:
        n = min(common_prefix_len(entry.tokens, tokens), len(tokens) - 1)
        return n if n >= self.min_match else 0

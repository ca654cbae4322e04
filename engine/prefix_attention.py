"""Decode attention that reads a shared prompt prefix once for a whole group of sequences.

With a prefix cache, the bot's concurrent answers all start with the same system + knowledge
prompt, copied into each sequence's KV slot. Decoding is then bound by reading those keys and
values: 16 sequences at ~330 positions read 16 copies of the same ~260-position prefix in
every layer, about 2.5 times the bytes of the 4-bit weights. Here the prefix is read
once from one member's slot and attended by all the group's queries as one matrix product;
each sequence reads only its own positions after the prefix, and one softmax spans both
parts' scores, so the result is exact (as in cascade / Hydragen attention).

Shapes: G rows in a group, Hkv key/value heads, R query heads per kv head, hd head dim,
L shared positions, S own positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class DecodeGroup:
    """Rows of one decode step whose slots hold identical keys/values for positions < L."""

    rows: torch.Tensor | slice  # [G] row indices into the batch (a slice when 0..B-1)
    shared_slot: int  # any member's slot: positions [0, shared_len) are read from it
    shared_len: int  # L; 0 = no shared part (rows that share nothing)
    own_slots: torch.Tensor | slice  # [G] the members' own slots
    own_end: int  # members' own keys are positions L .. own_end-1
    own_bias: torch.Tensor  # [G, 1, 1, own_end - L] 0 = the member has this key, -inf = not yet


def plan_groups(groups: Sequence[tuple[Sequence[int], int]], slots: Sequence[int],
                ends: Sequence[int], device: torch.device) -> list[DecodeGroup]:
    """Every row of the batch in exactly one group: the given ``(rows, shared_len)`` groups,
    plus one group with no shared part for the rows they leave out."""
    batch = len(slots)
    seen: set[int] = set()
    spec: list[tuple[list[int], int]] = []
    for rows, shared_len in groups:
        rows = list(rows)
        if seen & set(rows) or not rows:
            raise ValueError("shared-prefix groups must be disjoint and non-empty")
        if any(shared_len >= ends[r] for r in rows):
            raise ValueError("a shared prefix must end before each member's newest token")
        seen.update(rows)
        spec.append((rows, shared_len))
    rest = [r for r in range(batch) if r not in seen]
    if rest:
        spec.append((rest, 0))
    planned = []
    for rows, shared_len in spec:
        own_end = max(ends[r] for r in rows)
        key_pos = torch.arange(shared_len, own_end, device=device)
        ends_t = torch.tensor([ends[r] for r in rows], device=device)
        bias = torch.zeros((len(rows), 1, 1, own_end - shared_len), device=device)
        bias.masked_fill_((key_pos[None, :] >= ends_t[:, None])[:, None, None, :], float("-inf"))
        member_slots = [slots[r] for r in rows]
        planned.append(DecodeGroup(
            rows=_index(rows, device), shared_slot=member_slots[0], shared_len=shared_len,
            own_slots=_index(member_slots, device), own_end=own_end, own_bias=bias))
    return planned


def _index(values: list[int], device: torch.device) -> torch.Tensor | slice:
    """A slice when the values are consecutive (a view, no gather), else an index tensor."""
    if values == list(range(values[0], values[0] + len(values))):
        return slice(values[0], values[0] + len(values))
    return torch.tensor(values, device=device)


def grouped_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                             groups: Sequence[DecodeGroup]) -> torch.Tensor:
    """q [B, Hkv, R, hd] (one new token per row); caches [slots, Hkv, max_len, hd] of this
    layer, with this step's keys already written. Returns [B, Hkv, R, hd]."""
    parts = [(g.rows, prefix_split_attention(
        q[g.rows], k_cache[g.shared_slot, :, :g.shared_len],
        v_cache[g.shared_slot, :, :g.shared_len], k_cache[g.own_slots, :, g.shared_len:g.own_end],
        v_cache[g.own_slots, :, g.shared_len:g.own_end], g.own_bias)) for g in groups]
    whole = slice(0, q.shape[0])
    if len(parts) == 1 and isinstance(parts[0][0], slice) and parts[0][0] == whole:
        return parts[0][1]  # the usual case: one group, every row in order
    out = torch.empty_like(q)
    for rows, part in parts:
        out[rows] = part
    return out


def prefix_split_attention(q: torch.Tensor, k_shared: torch.Tensor, v_shared: torch.Tensor,
                           k_own: torch.Tensor, v_own: torch.Tensor,
                           own_bias: torch.Tensor) -> torch.Tensor:
    """Softmax attention of q over [shared keys ++ own keys], reading the shared keys once.

    q [G, Hkv, R, hd]; k_shared, v_shared [Hkv, L, hd] (L may be 0); k_own, v_own
    [G, Hkv, S, hd]; own_bias [G, 1, 1, S] (every row has at least one finite entry).
    The scores of both parts (small: L + S per query) go through one softmax, in fp32 whatever
    the cache dtype; only the keys and values are read in two parts. Returns [G, Hkv, R, hd]."""
    G, Hkv, R, hd = q.shape
    L = k_shared.shape[1]
    q = q * hd ** -0.5
    s_own = torch.matmul(q, k_own.transpose(-1, -2)).float() + own_bias  # [G, Hkv, R, S]
    if L == 0:
        probs = torch.softmax(s_own, dim=-1).to(v_own.dtype)
        return torch.matmul(probs, v_own)
    # every group member's queries against the one copy of the prefix: [Hkv, G*R, L]
    q_all = q.permute(1, 0, 2, 3).reshape(Hkv, G * R, hd)
    s_shared = torch.matmul(q_all, k_shared.transpose(-1, -2)).float()
    s_shared = s_shared.view(Hkv, G, R, L).permute(1, 0, 2, 3)  # [G, Hkv, R, L]
    probs = torch.softmax(torch.cat([s_shared, s_own], dim=-1), dim=-1).to(v_own.dtype)
    p_shared = probs[..., :L].permute(1, 0, 2, 3).reshape(Hkv, G * R, L)
    out_shared = torch.matmul(p_shared, v_shared).view(Hkv, G, R, hd).permute(1, 0, 2, 3)
    return torch.matmul(probs[..., L:], v_own) + out_shared  # [G, Hkv, R, hd]

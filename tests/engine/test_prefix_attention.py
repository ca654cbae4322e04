"""Shared-prefix decode attention: the same result as ordinary attention over every key."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.llama import LlamaForCausalLM
from engine.prefix_attention import plan_groups, prefix_split_attention
from tests.engine.tiny_llama import hf_config


def _reference(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               lengths: list[int]) -> torch.Tensor:
    """q [G, Hkv, R, hd] against keys/values [G, Hkv, S, hd], row g seeing its first lengths[g]."""
    S = keys.shape[2]
    mask = (torch.arange(S)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)


@pytest.mark.parametrize("shared_len", [0, 1, 37])
def test_split_attention_equals_attention_over_all_keys(shared_len: int) -> None:
    torch.manual_seed(0)
    G, Hkv, R, hd, S = 5, 2, 3, 16, 23
    q = torch.randn(G, Hkv, R, hd)
    k_shared, v_shared = torch.randn(Hkv, shared_len, hd), torch.randn(Hkv, shared_len, hd)
    k_own, v_own = torch.randn(G, Hkv, S, hd), torch.randn(G, Hkv, S, hd)
    own_lengths = [1, 5, 23, 9, 17]  # ragged: each row's own keys end somewhere else
    bias = torch.zeros(G, 1, 1, S)
    for g, n in enumerate(own_lengths):
        bias[g, :, :, n:] = float("-inf")
    got = prefix_split_attention(q, k_shared, v_shared, k_own, v_own, bias)
    keys = torch.cat([k_shared.expand(G, -1, -1, -1), k_own], dim=2)
    values = torch.cat([v_shared.expand(G, -1, -1, -1), v_own], dim=2)
    expected = _reference(q, keys, values, [shared_len + n for n in own_lengths])
    torch.testing.assert_close(got, expected)


def test_groups_are_checked_and_cover_every_row() -> None:
    cpu = torch.device("cpu")
    planned = plan_groups([([2, 0], 10)], slots=[4, 5, 6, 7], ends=[12, 30, 11, 20], device=cpu)
    assert [(g.shared_len, g.own_end) for g in planned] == [(10, 12), (0, 30)]
    assert planned[0].shared_slot == 6  # read from the group's first member
    assert isinstance(planned[0].rows, torch.Tensor) and planned[0].rows.tolist() == [2, 0]
    assert isinstance(planned[1].rows, torch.Tensor) and planned[1].rows.tolist() == [1, 3]
    bias = planned[0].own_bias  # own keys 10, 11: row 2 (ends at 11) has only the first
    assert torch.isinf(bias[0, 0, 0, 1:]).all() and torch.isfinite(bias[1]).all()
    with pytest.raises(ValueError, match="disjoint"):
        plan_groups([([0, 1], 4), ([1, 2], 4)], [0, 1, 2], [9, 9, 9], cpu)
    with pytest.raises(ValueError, match="before each member's newest token"):
        plan_groups([([0, 1], 9)], [0, 1], [9, 12], cpu)


def _model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    from engine.config import LlamaConfig

    return LlamaForCausalLM(LlamaConfig.from_hf_dict(hf_config(vocab_size=300).to_dict()))


def test_model_decode_with_shared_prefix_groups_matches_plain_decode() -> None:
    model = _model()
    L, slots = 20, 8
    cache = model.new_cache(slots, 64)
    prefix = torch.randint(3, 300, (1, L))
    model(prefix, cache, [0], slots=[0])
    for s in range(1, slots):
        cache.copy_prefix(0, s, L)  # what the prefix cache does
    own_lens = [3, 7, 1, 5, 9, 2, 4, 6]
    for s, n in enumerate(own_lens):
        model(torch.randint(3, 300, (1, n)), cache, [L], slots=[s])
    ends = [L + n for n in own_lens]
    rows = [6, 2, 7, 0, 3, 5]  # non-contiguous slots, in no particular order
    ids = torch.randint(3, 300, (len(rows), 1))
    starts = [ends[s] for s in rows]
    twin = model.new_cache(slots, 64)
    twin.k.copy_(cache.k)
    twin.v.copy_(cache.v)
    plain = model(ids, cache, starts, slots=rows, last_only=True)
    # two groups (one sharing only part of the prefix) and one row left on its own
    shared = model(ids, twin, starts, slots=rows, last_only=True,
                   shared_prefix=[([0, 2, 4], L), ([1, 3], 12)])
    torch.testing.assert_close(shared, plain)
    torch.testing.assert_close(twin.k, cache.k)  # the same keys were written
    with pytest.raises(ValueError, match="decode steps"):
        model(torch.randint(3, 300, (1, 2)), twin, [30], slots=[0], shared_prefix=[([0], 4)])

"""Our decoder against transformers on tiny random configs: same logits, batched and cached."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.config import LlamaConfig
from engine.errors import ContextLengthExceeded
from engine.llama import LlamaForCausalLM
from tests.engine.tiny_llama import hf_config, hf_model

LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}

CONFIGS: dict[str, dict[str, Any]] = {
    "tied-gqa-llama3rope": dict(tie_word_embeddings=True, rope_parameters=LLAMA3_ROPE),
    "untied-mha-linearrope": dict(num_key_value_heads=4, rope_parameters={
        "rope_type": "linear", "rope_theta": 500000.0, "factor": 2.0}),
    "mqa-attention-bias": dict(num_key_value_heads=1, attention_bias=True, head_dim=32),
    "qwen2-qkv-bias": dict(model_type="qwen2", tie_word_embeddings=True),
}


def build(name: str) -> tuple[Any, LlamaForCausalLM]:
    overrides = dict(CONFIGS[name])
    if overrides.pop("model_type", "llama") == "qwen2":
        from transformers import Qwen2Config

        base = hf_config().to_dict()
        base.pop("model_type", None)
        base.update(overrides)
        cfg = Qwen2Config(**{k: v for k, v in base.items() if k not in ("attention_bias",
                                                                          "mlp_bias")})
        cfg._attn_implementation = "eager"
    else:
        cfg = hf_config(**overrides)
    ref = hf_model(cfg)
    ours = LlamaForCausalLM(LlamaConfig.from_hf_dict(cfg.to_dict()))
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.fixture(params=sorted(CONFIGS))
def pair(request: pytest.FixtureRequest) -> tuple[Any, LlamaForCausalLM]:
    return build(request.param)


def test_state_dict_uses_hugging_face_names(pair: tuple[Any, LlamaForCausalLM]) -> None:
    ref, ours = pair
    theirs = ref.state_dict()
    mine = ours.state_dict()
    if ours.config.tie_word_embeddings:
        theirs.pop("lm_head.weight")
    assert sorted(mine) == sorted(theirs)
    for key, value in theirs.items():
        assert torch.equal(mine[key], value), key


def test_padded_batch_matches_transformers(pair: tuple[Any, LlamaForCausalLM]) -> None:
    ref, ours = pair
    torch.manual_seed(1)
    lengths = [19, 11, 4]
    ids = torch.randint(3, 300, (3, 19))
    mask = torch.zeros(3, 19, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, n:] = 0  # padding id: anything valid
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask).logits
    got = ours(ids, ours.new_cache(3, 32), [0, 0, 0], lengths=lengths)
    assert got.shape == (3, 19, 300)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(got[b, :n], expected[b, :n])
    last = ours(ids, ours.new_cache(3, 32), [0, 0, 0], lengths=lengths, last_only=True)
    torch.testing.assert_close(last, torch.stack([expected[b, n - 1]
                                                  for b, n in enumerate(lengths)]))


def test_incremental_decode_matches_full_forward(pair: tuple[Any, LlamaForCausalLM]) -> None:
    ref, ours = pair
    torch.manual_seed(2)
    ids = torch.randint(3, 300, (1, 24))
    with torch.no_grad():
        expected = ref(ids).logits
    full = ours(ids, ours.new_cache(2, 32), [0])
    torch.testing.assert_close(full, expected)

    cache = ours.new_cache(4, 32)
    pieces = [ours(ids[:, :9], cache, [0], slots=[3])]  # prefill
    pieces.append(ours(ids[:, 9:14], cache, [9], slots=[3]))  # a chunk on top of the cache
    for t in range(14, 24):  # then one token at a time
        pieces.append(ours(ids[:, t:t + 1], cache, [t], slots=[3]))
    torch.testing.assert_close(torch.cat(pieces, dim=1), full)


def test_rows_at_different_positions_in_any_slots(pair: tuple[Any, LlamaForCausalLM]) -> None:
    """Continuous batching: rows join at different positions, in non-contiguous slots."""
    _, ours = pair
    torch.manual_seed(3)
    seqs = [torch.randint(3, 300, (1, n)) for n in (15, 6, 10)]
    fulls = [ours(s, ours.new_cache(1, 32), [0]) for s in seqs]

    cache = ours.new_cache(5, 32)
    slots = [4, 0, 2]
    prefill = [s[:, :-3] for s in seqs]
    width = max(p.shape[1] for p in prefill)
    batch = torch.zeros(3, width, dtype=torch.long)
    for b, p in enumerate(prefill):
        batch[b, : p.shape[1]] = p[0]
    lengths = [p.shape[1] for p in prefill]
    ours(batch, cache, [0, 0, 0], slots=slots, lengths=lengths)
    for k in range(3):  # three decode steps, each row at its own position
        step = torch.stack([s[0, n + k] for s, n in zip(seqs, lengths, strict=True)])[:, None]
        out = ours(step, cache, [n + k for n in lengths], slots=slots, last_only=True)
        for b in range(3):
            torch.testing.assert_close(out[b], fulls[b][0, lengths[b] + k])
    # A batch of only some rows, in a different order, still reads the right slots.
    out = ours(torch.tensor([[5], [7]]), cache, [lengths[2] + 3, lengths[0] + 3],
               slots=[2, 4], last_only=True)
    ref2 = ours(torch.cat([seqs[2], torch.tensor([[5]])], 1), ours.new_cache(1, 32), [0])
    torch.testing.assert_close(out[0], ref2[0, -1])


def test_copy_prefix_reuses_cached_keys(pair: tuple[Any, LlamaForCausalLM]) -> None:
    _, ours = pair
    torch.manual_seed(4)
    prefix, suffix = torch.randint(3, 300, (1, 12)), torch.randint(3, 300, (1, 5))
    expected = ours(torch.cat([prefix, suffix], 1), ours.new_cache(1, 32), [0])[:, 12:]
    cache = ours.new_cache(3, 32)
    ours(prefix, cache, [0], slots=[0])
    cache.copy_prefix(0, 2, 12)
    got = ours(suffix, cache, [12], slots=[2])
    torch.testing.assert_close(got, expected)


def test_cache_overflow_is_a_typed_error() -> None:
    _, ours = build("tied-gqa-llama3rope")
    with pytest.raises(ContextLengthExceeded):
        ours(torch.zeros(1, 10, dtype=torch.long), ours.new_cache(1, 8), [0])


def test_mistral_sliding_window_matches_transformers() -> None:
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(**{k: v for k, v in hf_config().to_dict().items()
                           if k in ("vocab_size", "hidden_size", "intermediate_size",
                                    "num_hidden_layers", "num_attention_heads",
                                    "num_key_value_heads", "rms_norm_eps")},
                        sliding_window=5,
                        attn_implementation="eager")  # type: ignore[call-arg]
    torch.manual_seed(5)
    ref = MistralForCausalLM(cfg).eval()
    ours = LlamaForCausalLM(LlamaConfig.from_hf_dict(cfg.to_dict()))
    ours.load_state_dict(ref.state_dict())
    ids = torch.randint(0, 300, (1, 16))
    with torch.no_grad():
        expected = ref(ids).logits
    torch.testing.assert_close(ours(ids, ours.new_cache(1, 16), [0]), expected)
    cache = ours.new_cache(1, 16)
    steps = [ours(ids[:, :8], cache, [0])] + [ours(ids[:, t:t + 1], cache, [t])
                                             for t in range(8, 16)]
    torch.testing.assert_close(torch.cat(steps, 1), expected)

"""The BERT encoder against transformers' `BertModel` on a tiny random config (fast, no files)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import BertConfig as HFBertConfig
from transformers import BertModel as HFBertModel

from engine.bert import BertConfig, BertModel, load_bert_weights, mean_pool
from engine.errors import CorruptModelFile, ModelLoadError, UnsupportedArchitecture

VOCAB, HIDDEN = 99, 32
TINY: dict[str, Any] = {
    "model_type": "bert",
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}


def tiny_pair(hidden_act: str = "gelu") -> tuple[HFBertModel, BertModel]:
    """A random transformers BertModel and ours holding the same weights, both in eval mode."""
    torch.manual_seed(0)
    hf_cfg = HFBertConfig(**{**TINY, "hidden_act": hidden_act})
    hf = HFBertModel(hf_cfg, add_pooling_layer=True).eval()
    ours = BertModel(BertConfig.from_dict(hf_cfg.to_dict(), source="tiny")).eval()
    load_bert_weights(ours, hf.state_dict(), "tiny")
    return hf, ours


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Four sequences of lengths 11, 7, 3 and 11, right-padded with pad id 0."""
    torch.manual_seed(1)
    lengths = [11, 7, 3, 11]
    input_ids = torch.randint(5, VOCAB, (len(lengths), max(lengths)))
    attention_mask = torch.zeros_like(input_ids)
    for i, n in enumerate(lengths):
        attention_mask[i, :n] = 1
    input_ids[attention_mask == 0] = 0
    return input_ids, attention_mask


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_hidden_states_match_transformers_on_padded_batch(hidden_act: str) -> None:
    hf, ours = tiny_pair(hidden_act)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        expected = hf(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        got = ours(input_ids, attention_mask)
    assert got.shape == (4, 11, HIDDEN)
    torch.testing.assert_close(got, expected)


def test_token_type_ids_match_transformers() -> None:
    hf, ours = tiny_pair()
    input_ids, attention_mask = padded_batch()
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 5:] = 1
    with torch.no_grad():
        expected = hf(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        got = ours(input_ids, attention_mask, token_type_ids)
    torch.testing.assert_close(got, expected)


def test_sentence_vector_ignores_padding() -> None:
    """A sentence padded into a batch embeds like the sentence alone: pads are masked and pooled
    out."""
    _, ours = tiny_pair()
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        batched = ours.encode(input_ids, attention_mask)
        alone = ours.encode(input_ids[2:3, :3], None)
    assert batched.dtype == torch.float32
    torch.testing.assert_close(batched.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(batched[2:3], alone)


def test_mean_pool_pools_in_float32_over_real_tokens() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], dtype=torch.bfloat16)
    pooled = mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 3.0]]))


def test_module_is_trainable() -> None:
    """No inference_mode inside forward: gradients reach the embeddings, dropout acts in train."""
    _, ours = tiny_pair()
    input_ids, attention_mask = padded_batch()
    ours.train()
    a = ours.encode(input_ids, attention_mask)
    b = ours.encode(input_ids, attention_mask)
    assert not torch.equal(a, b), "dropout should make two train-mode passes differ"
    (a @ b.T).diagonal().sum().backward()
    grad = ours.embeddings.word_embeddings.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_weights_with_bert_prefix_and_extra_heads_load() -> None:
    """BertFor* checkpoints prefix keys with "bert." and carry heads we do not use."""
    hf, ours = tiny_pair()
    prefixed = {f"bert.{k}": v for k, v in hf.state_dict().items()}
    prefixed["cls.predictions.bias"] = torch.zeros(VOCAB)
    fresh = BertModel(ours.config).eval()
    load_bert_weights(fresh, prefixed, "prefixed")
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        expected = ours(input_ids, attention_mask)
        torch.testing.assert_close(fresh(input_ids, attention_mask), expected)


def test_missing_or_misshapen_weight_is_corrupt_model_file() -> None:
    hf, ours = tiny_pair()
    state = dict(hf.state_dict())
    del state["encoder.layer.2.output.dense.weight"]
    with pytest.raises(CorruptModelFile, match=r"some/model\.safetensors.*layer\.2\.output"):
        load_bert_weights(ours, state, "some/model.safetensors")
    state = dict(hf.state_dict())
    state["embeddings.word_embeddings.weight"] = torch.zeros(5, HIDDEN)
    with pytest.raises(CorruptModelFile, match="word_embeddings"):
        load_bert_weights(ours, state, "some/model.safetensors")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"model_type": "llama"}, "model_type='llama'"),
        ({"model_type": "roberta"}, "model_type='roberta'"),
        ({"position_embedding_type": "relative_key"}, "relative_key"),
        ({"hidden_act": "swish"}, "swish"),
        ({"num_attention_heads": 5}, "divisible"),
        ({"is_decoder": True}, "decoder"),
    ],
)
def test_unsupported_configs_are_rejected(override: dict[str, object], message: str) -> None:
    with pytest.raises(UnsupportedArchitecture, match=message) as info:
        BertConfig.from_dict({**TINY, **override}, source="dir/config.json")
    assert str(info.value).startswith("dir/config.json: ")


def test_config_missing_key_names_the_key() -> None:
    raw = {k: v for k, v in TINY.items() if k != "hidden_size"}
    with pytest.raises(ModelLoadError, match="hidden_size"):
        BertConfig.from_dict(raw, source="dir/config.json")


def test_config_round_trips_through_hf_dict() -> None:
    cfg = BertConfig.from_dict(TINY)
    assert BertConfig.from_dict(cfg.to_hf_dict()) == cfg
    assert HFBertConfig(**cfg.to_hf_dict()).hidden_size == cfg.hidden_size

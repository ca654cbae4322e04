"""GGUF loading on tiny files written with gguf.GGUFWriter: weights, permutation, tying, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

from engine.device import Placement
from engine.errors import (
    CorruptModelFile,
    MissingTokenizer,
    ModelLoadError,
    UnsupportedArchitecture,
    UnsupportedQuantType,
)
from engine.gguf_file import read_gguf
from engine.gguf_loader import SUPPORTED_TYPES, dequantize_tensor, load_gguf
from tests.engine.tiny_llama import hf_config, hf_model, write_gguf

CPU = Placement(torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def tied_ref() -> object:
    return hf_model(hf_config(vocab_size=280, tie_word_embeddings=True))


def _logits(model: object, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits  # type: ignore[operator,no-any-return]


@pytest.mark.parametrize("tied", [True, False])
def test_f32_gguf_matches_the_model_it_was_written_from(tmp_path: Path, tied: bool,
                                                        tied_ref: object) -> None:
    ref = tied_ref if tied else hf_model(hf_config(vocab_size=280))
    path = write_gguf(tmp_path / "tiny.gguf", ref)
    loaded = load_gguf(path, CPU)
    assert loaded.config.tie_word_embeddings is tied
    assert (loaded.model.lm_head is None) is tied
    ids = torch.randint(3, 280, (2, 9))
    ours = loaded.model(ids, loaded.model.new_cache(2, 16), [0, 0])
    torch.testing.assert_close(ours, _logits(ref, ids))


def test_qwen2_gguf_keeps_rows_unpermuted_and_loads_biases(tmp_path: Path) -> None:
    from transformers import Qwen2Config

    base = {k: v for k, v in hf_config(vocab_size=280).to_dict().items()
            if k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "rms_norm_eps")}
    cfg = Qwen2Config(**base, attn_implementation="eager")  # type: ignore[call-arg]
    ref = hf_model(cfg)
    loaded = load_gguf(write_gguf(tmp_path / "qwen.gguf", ref, arch="qwen2", pre="qwen2"), CPU)
    assert loaded.config.attention_bias
    ids = torch.randint(3, 280, (1, 11))
    torch.testing.assert_close(loaded.model(ids, loaded.model.new_cache(1, 16), [0]),
                               _logits(ref, ids))


@pytest.mark.parametrize("qtype", [GGMLQuantizationType.Q8_0, GGMLQuantizationType.F16,
                                   GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1,
                                   GGMLQuantizationType.Q5_1, GGMLQuantizationType.BF16])
def test_quantised_tensors_are_dequantised_with_gguf(tmp_path: Path, qtype: GGMLQuantizationType,
                                                     tied_ref: object) -> None:
    path = write_gguf(tmp_path / "q.gguf", tied_ref, qtype=qtype)
    gf = read_gguf(path)
    info = gf.tensors["blk.0.ffn_up.weight"]
    assert info.ggml_type == qtype
    expected = dequantize(gf.raw(info).reshape(info.shape[0], -1), qtype)
    np.testing.assert_array_equal(dequantize_tensor(gf, info), expected)  # fast paths: exact
    loaded = load_gguf(path, CPU)
    up = loaded.model.state_dict()["model.layers.0.mlp.up_proj.weight"]
    np.testing.assert_array_equal(up.numpy(), expected)


@pytest.mark.parametrize("qtype", sorted(SUPPORTED_TYPES))
def test_every_supported_type_dequantises(qtype: GGMLQuantizationType) -> None:
    block, size = GGML_QUANT_SIZES[qtype]
    cols = 256  # a multiple of every block size
    raw = np.zeros((4, cols // block * size), dtype=np.uint8)
    out = dequantize(raw, qtype)
    assert out.shape == (4, cols) and not np.isnan(out).any()


# -- errors: each names the file ------------------------------------------------------------------
def _assert_names_file(err: ModelLoadError, path: Path) -> None:
    assert str(path) in str(err)
    assert err.path == str(path)


def test_unsupported_architecture(tmp_path: Path, tied_ref: object) -> None:
    path = write_gguf(tmp_path / "mamba.gguf", tied_ref, arch="mamba")
    with pytest.raises(UnsupportedArchitecture, match="'mamba'") as info:
        load_gguf(path, CPU)
    _assert_names_file(info.value, path)


def test_unsupported_quant_type(tmp_path: Path, tied_ref: object) -> None:
    qtype = GGMLQuantizationType.IQ2_XXS
    block, size = GGML_QUANT_SIZES[qtype]
    raw = np.zeros((64, 256 // block * size), dtype=np.uint8)
    path = write_gguf(tmp_path / "iq.gguf", tied_ref,
                      extra_tensor=("output.weight", raw, qtype))
    with pytest.raises(UnsupportedQuantType, match="IQ2_XXS") as info:
        load_gguf(path, CPU)
    _assert_names_file(info.value, path)
    assert "output.weight" in str(info.value)


def test_truncated_file(tmp_path: Path, tied_ref: object) -> None:
    path = write_gguf(tmp_path / "whole.gguf", tied_ref)
    data = path.read_bytes()
    for name, keep in [("tail.gguf", len(data) - 100), ("head.gguf", 300), ("empty.gguf", 0)]:
        cut = tmp_path / name
        cut.write_bytes(data[:keep])
        with pytest.raises(CorruptModelFile) as info:
            load_gguf(cut, CPU)
        _assert_names_file(info.value, cut)
    assert "truncated" in str(info.value) or "empty" in str(info.value)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(CorruptModelFile, match="not a GGUF") as info:
        load_gguf(path, CPU)
    _assert_names_file(info.value, path)


def test_missing_tokenizer(tmp_path: Path, tied_ref: object) -> None:
    path = write_gguf(tmp_path / "notok.gguf", tied_ref, tokenizer=False)
    with pytest.raises(MissingTokenizer, match="tokenizer") as info:
        load_gguf(path, CPU)
    _assert_names_file(info.value, path)


def test_truncated_copy_of_a_real_model_fails_fast(tmp_path: Path, smollm_path: str) -> None:
    """The real SmolLM2 file, cut in the middle of its tensor data."""
    cut = tmp_path / "smollm-cut.gguf"
    with open(smollm_path, "rb") as src, open(cut, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
        dst.truncate(60 << 20)
    with pytest.raises(CorruptModelFile, match="truncated") as info:
        read_gguf(cut)
    _assert_names_file(info.value, cut)

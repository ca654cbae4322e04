"""The encoder's CPU serving path (engine/bert_packed.py) against the padded module forward."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import bert_packed, native
from engine.bert import BertConfig, BertModel
from engine.bert_packed import PackedEncoder, matmul_dtype
from engine.native import kernel_library

LENGTHS = [1, 2, 5, 16, 17, 33, 40, 40, 9]  # around the kernel's 16-key vectors and 4-query blocks


def tiny_model(hidden: int, heads: int, act: str = "gelu") -> BertModel:
    torch.manual_seed(0)
    cfg: dict[str, Any] = {"model_type": "bert", "vocab_size": 50, "hidden_size": hidden,
                           "num_hidden_layers": 2, "num_attention_heads": heads,
                           "intermediate_size": 3 * hidden, "max_position_embeddings": 64,
                           "type_vocab_size": 2, "hidden_act": act, "pad_token_id": 0}
    model = BertModel(BertConfig.from_dict(cfg, source="tiny")).eval()
    with torch.no_grad():  # fresh modules have zero biases and unit LayerNorms: make them bite
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def rows(lengths: list[int], seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(1, 50) for _ in range(n)] for n in lengths]


def padded_reference(model: BertModel, ids: list[list[int]]) -> torch.Tensor:
    T = max(len(r) for r in ids)
    input_ids = torch.zeros(len(ids), T, dtype=torch.long)
    mask = torch.zeros(len(ids), T, dtype=torch.long)
    for i, r in enumerate(ids):
        input_ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    with torch.no_grad():
        return model.encode(input_ids, mask)


@pytest.mark.parametrize(("hidden", "heads"), [(32, 4), (32, 2), (64, 2)])  # head dims 8, 16, 32
@pytest.mark.parametrize("kernel", [True, False], ids=["c-kernel", "torch-attention"])
def test_fp32_packed_equals_padded_forward(hidden: int, heads: int, kernel: bool) -> None:
    if kernel and kernel_library() is None:
        pytest.fail("the C kernels did not build here (gcc is part of the dev setup)")
    model = tiny_model(hidden, heads)
    enc = PackedEncoder(model, torch.float32)
    if not kernel:
        enc.lib = None
    ids = rows(LENGTHS)
    torch.testing.assert_close(enc.encode(ids), padded_reference(model, ids))


_FLAGS = set(native.cpu_flags().split())
# Every vector width vec.h can pick on this CPU: SSE (4 lanes), AVX2 (8), AVX-512 (16).
WIDTHS = [("-march=x86-64",)] + ([("-mno-avx512f",)] if "avx2" in _FLAGS else []) + (
    [()] if "avx512f" in _FLAGS else [])


@pytest.mark.parametrize("flags", WIDTHS, ids=lambda f: " ".join(f) or "native")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_every_vector_width_of_the_kernels_agrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  flags: tuple[str, ...],
                                                  dtype: torch.dtype) -> None:
    compiler = native.find_compiler()
    assert compiler is not None, "no C compiler: install gcc"
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path))
    model = tiny_model(64, 2)  # head dim 32: the vector path of the output loop
    ids = rows(LENGTHS, seed=4)
    reference = PackedEncoder(model, dtype)
    reference.lib = None  # torch ops
    variant = PackedEncoder(model, dtype)
    variant.lib = native.load_library(native.build_library(compiler, flags))
    torch.testing.assert_close(variant.encode(ids), reference.encode(ids),
                               atol=1e-5 if dtype == torch.float32 else 2e-3, rtol=1e-4)


def test_relu_and_tanh_gelu_models_use_their_own_activation() -> None:
    for act in ("relu", "gelu_new"):
        model = tiny_model(32, 2, act)
        ids = rows(LENGTHS, seed=1)
        torch.testing.assert_close(PackedEncoder(model, torch.float32).encode(ids),
                                   padded_reference(model, ids))


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_bf16_matmuls_stay_close_to_fp32(act: str) -> None:
    """bf16 operands (with oneDNN's fused activation where torch has it) vs the fp32 module."""
    model = tiny_model(64, 2, act)
    ids = rows(LENGTHS, seed=2)
    got = PackedEncoder(model, torch.bfloat16).encode(ids)
    assert got.dtype == torch.float32
    cosine = (got * padded_reference(model, ids)).sum(-1)
    assert cosine.min().item() > 0.999, cosine.tolist()


def test_weights_changed_in_place_are_picked_up() -> None:
    model = tiny_model(32, 2)
    enc = PackedEncoder(model, torch.float32)
    ids = rows(LENGTHS, seed=3)
    before = enc.encode(ids)
    with torch.no_grad():  # what an optimizer step does: in-place updates
        model.layers[1].intermediate.dense.weight.mul_(-1.5)
    after = enc.encode(ids)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, padded_reference(model, ids))


def test_kernel_refuses_a_key_buffer_without_padding_columns() -> None:
    lib = kernel_library()
    if lib is None:
        pytest.fail("the C kernels did not build here (gcc is part of the dev setup)")
    qv, kt, out = torch.zeros(4, 2 * 16), torch.zeros(16, 4), torch.zeros(4, 16)
    offsets = torch.tensor([0, 4])
    assert lib.sb_attention_packed(qv.data_ptr(), kt.data_ptr(), out.data_ptr(),
                                   offsets.data_ptr(), 1, 1, 16, 4, 0.25, 0) == -2


def test_precision_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(bert_packed.PRECISION_ENV, "fp32")
    assert matmul_dtype() == torch.float32
    monkeypatch.setenv(bert_packed.PRECISION_ENV, "bf16")
    assert matmul_dtype() == torch.bfloat16
    monkeypatch.setenv(bert_packed.PRECISION_ENV, "auto")
    native = bert_packed.native_bf16_cpu()
    assert matmul_dtype() == (torch.bfloat16 if native else torch.float32)
    monkeypatch.setenv(bert_packed.PRECISION_ENV, "fp8")
    with pytest.raises(ValueError, match="SUPPORTBOT_EMBED_PRECISION='fp8' is not one of"):
        matmul_dtype()

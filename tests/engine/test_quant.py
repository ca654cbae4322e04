"""The decode kernel on GGML blocks (engine/quant.py + engine/kernels/qmatmul.c).

Built with the machine's C compiler on first use; these tests need one (CI has gcc)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf.constants import GGMLQuantizationType as Q
from gguf.quants import dequantize

from engine import native, quant
from engine.device import Placement
from engine.generator import Generator
from engine.gguf_file import read_gguf
from engine.gguf_loader import gguf_quantized_weights, load_gguf
from engine.llama import Linear, LlamaForCausalLM
from engine.quant import QuantizedWeight
from tests.engine.tiny_llama import hf_config, hf_model, write_gguf

CPU = Placement(torch.device("cpu"), torch.float32)
KINDS = [Q.Q4_0, Q.Q4_1, Q.Q8_0]


def _random_blocks(qtype: Q, n: int, k: int, seed: int = 0) -> np.ndarray:
    """Raw GGML bytes: random quants, fp16 scales/mins of realistic size (no NaN/inf)."""
    rng = np.random.default_rng(seed)
    block_bytes = {Q.Q4_0: 18, Q.Q4_1: 20, Q.Q8_0: 34}[qtype]
    raw = rng.integers(0, 256, size=(n, k // 32, block_bytes), dtype=np.uint8)
    raw[:, :, 0:2] = (rng.random((n, k // 32, 1)) * 0.02).astype(np.float16).view(np.uint8)
    if qtype == Q.Q4_1:
        raw[:, :, 2:4] = (-rng.random((n, k // 32, 1)) * 0.1).astype(np.float16).view(np.uint8)
    return raw.reshape(n, -1)


@pytest.mark.parametrize("qtype", KINDS)
def test_kernel_multiplies_by_exactly_the_dequantised_weights(qtype: Q) -> None:
    n, k = 70, 96  # N not a multiple of the kernel's 4-row tiles
    raw = _random_blocks(qtype, n, k)
    weight = torch.from_numpy(dequantize(raw, qtype))  # [n, k], gguf's own dequantiser
    qw = QuantizedWeight.from_blocks(raw, qtype, (n, k))
    assert (qw.out_features, qw.in_features) == (n, k)
    for rows in (1, 2, 3, 5, 8, 11, 16):
        x = torch.randn(rows, k)
        torch.testing.assert_close(qw.matmul(x), x @ weight.T)


@pytest.mark.parametrize("qtype", KINDS)
def test_a_rows_result_does_not_depend_on_its_batch(qtype: Q) -> None:
    raw = _random_blocks(qtype, 40, 64, seed=1)
    qw = QuantizedWeight.from_blocks(raw, qtype, (40, 64))
    x = torch.randn(13, 64)
    together = qw.matmul(x)
    for i in range(13):
        assert torch.equal(qw.matmul(x[i:i + 1])[0], together[i])  # bit-identical
    assert torch.equal(qw.matmul(x[3:9]), together[3:9])


def _cpu_flags() -> set[str]:
    return set(native.cpu_flags().split())


# (extra compiler flags, the level sb_qmatmul_fast reports): every variant this CPU can run
VARIANTS: list[tuple[tuple[str, ...], int]] = [(("-march=x86-64",), 0)]
if {"avx2", "fma"} <= _cpu_flags():
    VARIANTS.append((("-mno-avx512f",), 1))
if "avx512f" in _cpu_flags():
    VARIANTS.append(((), 2))


@pytest.mark.parametrize(("flags", "level"), VARIANTS, ids=lambda v: str(v))
def test_every_kernel_variant_computes_the_same_products(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         flags: tuple[str, ...],
                                                         level: int) -> None:
    compiler = native.find_compiler()
    assert compiler is not None, "no C compiler: install gcc"
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path))
    lib = native.load_library(native.build_library(compiler, flags))
    assert lib.sb_qmatmul_fast() == level
    for qtype in KINDS:
        n, k = 13, 96
        raw = _random_blocks(qtype, n, k, seed=level)
        qw = QuantizedWeight.from_blocks(raw, qtype, (n, k))
        weight = torch.from_numpy(dequantize(raw, qtype))
        x = torch.randn(9, k)
        y = torch.empty(9, n)
        mins = None if qw.mins is None else qw.mins.data_ptr()
        status = lib.sb_qmatmul(int(qtype), qw.qs.data_ptr(), qw.scale.data_ptr(), mins,
                                x.data_ptr(), y.data_ptr(), 9, n, k)
        assert status == 0
        torch.testing.assert_close(y, x @ weight.T)
        for i in (0, 4, 8):  # batch-independent in every variant
            one = torch.empty(1, n)
            lib.sb_qmatmul(int(qtype), qw.qs.data_ptr(), qw.scale.data_ptr(), mins,
                           x[i:i + 1].contiguous().data_ptr(), one.data_ptr(), 1, n, k)
            assert torch.equal(one[0], y[i])
    assert lib.sb_qmatmul(99, 0, 0, None, 0, 0, 1, 1, 32) == -2  # unknown type: refused
    assert lib.sb_qmatmul(int(Q.Q8_0), 0, 0, None, 0, 0, 1, 1, 40) == -1  # K not 32 * n


def test_decode_rms_norm_matches_torch() -> None:
    import torch.nn.functional as F

    weight = torch.randn(96)
    for rows in (1, 3, 16):
        x = torch.randn(rows, 1, 96) * 3
        got = quant.rms_norm(x, weight, 1e-5)
        assert got is not None and got.shape == x.shape
        torch.testing.assert_close(got, F.rms_norm(x, (96,), weight, 1e-5))
    odd = torch.randn(2, 37)  # a width that is not a multiple of the vector length
    got = quant.rms_norm(odd, torch.ones(37), 1e-6)
    assert got is not None
    torch.testing.assert_close(got, F.rms_norm(odd, (37,), torch.ones(37), 1e-6))


def test_reordered_and_stacked_rows_match_the_dense_equivalents() -> None:
    a = QuantizedWeight.from_blocks(_random_blocks(Q.Q4_1, 8, 64, 2), Q.Q4_1, (8, 64))
    b = QuantizedWeight.from_blocks(_random_blocks(Q.Q4_1, 4, 64, 3), Q.Q4_1, (4, 64))
    x = torch.randn(2, 64)
    order = torch.tensor([7, 0, 6, 1, 5, 2, 4, 3])
    torch.testing.assert_close(a.rows(order).matmul(x), a.matmul(x)[:, order])
    stacked = QuantizedWeight.stack([a, b])
    assert stacked is not None and stacked.out_features == 12
    torch.testing.assert_close(stacked.matmul(x), torch.cat([a.matmul(x), b.matmul(x)], dim=1))
    c = QuantizedWeight.from_blocks(_random_blocks(Q.Q8_0, 4, 64, 4), Q.Q8_0, (4, 64))
    assert QuantizedWeight.stack([a, c]) is None  # mixed storage: the fused module stays fp32


def test_bad_input_is_refused_with_a_clear_message() -> None:
    qw = QuantizedWeight.from_blocks(_random_blocks(Q.Q8_0, 4, 64), Q.Q8_0, (4, 64))
    with pytest.raises(ValueError, match=r"\[\.\.\., 64\]"):
        qw.matmul(torch.randn(2, 32))
    with pytest.raises(ValueError, match="fp32"):
        qw.matmul(torch.randn(2, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match="multiple of 32"):
        QuantizedWeight.from_blocks(np.zeros(34, dtype=np.uint8), Q.Q8_0, (1, 40))


def _linears(model: LlamaForCausalLM) -> list[Linear]:
    return [m for m in model.modules() if isinstance(m, Linear)]


def _strip(model: LlamaForCausalLM) -> None:
    for module in _linears(model):
        module.quantized = None
    model.head_quantized = None


@pytest.mark.parametrize("qtype", KINDS)
@pytest.mark.parametrize("tied", [True, False])
def test_model_decodes_the_same_with_and_without_the_kernel(tmp_path: Path, qtype: Q,
                                                            tied: bool) -> None:
    ref = hf_model(hf_config(vocab_size=288, tie_word_embeddings=tied))
    path = write_gguf(tmp_path / "q.gguf", ref, qtype=qtype)
    gf = read_gguf(path)
    with_kernel = load_gguf(path, CPU)
    weights = gguf_quantized_weights(gf, with_kernel.config)
    assert len(weights) == 4 * 2 + 1  # qkv, o, gate_up, down per layer, and the head
    with_kernel.model.use_quantized(weights)  # attached even on a CPU without AVX2
    plain = load_gguf(path, CPU)
    _strip(plain.model)

    prompts = torch.randint(3, 288, (3, 7))
    caches = [m.model.new_cache(3, 32) for m in (with_kernel, plain)]
    outs = [m.model(prompts, c, [0, 0, 0], last_only=True)
            for m, c in zip((with_kernel, plain), caches, strict=True)]
    torch.testing.assert_close(outs[0], outs[1])  # 3 rows x 7 tokens: the fp32 path for both
    token = outs[1].argmax(-1, keepdim=True)  # [3, 1]
    for _ in range(4):  # decode steps: kernel vs fp32 weights
        a, b = (m.model(token, c, [7 + _] * 3, last_only=True)
                for m, c in zip((with_kernel, plain), caches, strict=True))
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        token = b.argmax(-1, keepdim=True)


def test_use_quantized_checks_shapes(tmp_path: Path) -> None:
    loaded = load_gguf(write_gguf(tmp_path / "q.gguf", qtype=Q.Q8_0), CPU)
    wrong = QuantizedWeight.from_blocks(_random_blocks(Q.Q8_0, 4, 64), Q.Q8_0, (4, 64))
    with pytest.raises(ValueError, match="qkv_proj: quantised weight is 4x64"):
        loaded.model.use_quantized({"model.layers.0.self_attn.qkv_proj": wrong})


def test_kernel_is_built_once_per_cache_dir_and_can_be_switched_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path))
    native.kernel_library.cache_clear()
    try:
        assert native.kernel_library() is not None
        built = list((tmp_path / "kernels").glob("supportbot-kernels-*.so"))
        assert len(built) == 1
        native.kernel_library.cache_clear()
        assert native.kernel_library() is not None
        assert list((tmp_path / "kernels").glob("*")) == built  # reused, no second build

        monkeypatch.setenv(native.DISABLE_ENV, "0")
        native.kernel_library.cache_clear()
        quant.max_rows.cache_clear()
        assert native.kernel_library() is None and not quant.kernel_available()
        loaded = load_gguf(write_gguf(tmp_path / "q.gguf", qtype=Q.Q4_0), CPU)
        assert loaded.model.head_quantized is None  # fp32 weights only
    finally:
        native.kernel_library.cache_clear()
        quant.max_rows.cache_clear()


def test_an_unusable_cache_dir_falls_back_to_fp32_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv(native.CACHE_ENV, str(blocker))
    native.kernel_library.cache_clear()
    quant.max_rows.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="engine.native"):
            assert native.kernel_library() is None
        assert "running without them" in caplog.text
        assert quant.max_rows() == 0
    finally:
        native.kernel_library.cache_clear()
        quant.max_rows.cache_clear()


def test_smollm_decode_with_the_kernel_matches_fp32_weights(smollm_generator: Generator) -> None:
    gen = smollm_generator
    model = gen.model
    if not quant.kernel_available():  # no AVX2 (or no compiler): fp32 weights only
        assert model.head_quantized is None
        return
    assert model.head_quantized is not None  # the real Q4_1/Q8_0 file loads with the kernel
    prompt = gen.chat_prompt([{"role": "user", "content": "How do I reset my password?"}])
    cache = model.new_cache(1, 128)
    first = model(torch.tensor([prompt]), cache, [0], last_only=True)
    token = first.argmax(-1, keepdim=True)
    decoded = model(token, cache, [len(prompt)], last_only=True)
    saved = {m: m.quantized for m in _linears(model)}
    assert all(q is not None for q in saved.values())
    head = model.head_quantized
    try:
        _strip(model)
        dense = model(token, cache, [len(prompt)], last_only=True)
    finally:
        for m, q in saved.items():
            m.quantized = q
        model.head_quantized = head
    assert (decoded - dense).abs().max().item() < 1e-3
    assert torch.equal(decoded.argmax(-1), dense.argmax(-1))

"""Load a llama.cpp GGUF file into our decoder: dequantise once, rename to Hugging Face names.

Quantised blocks are expanded to the compute dtype at load with ``gguf.quants.dequantize`` (the
same routine transformers uses, so our weights are bit-identical to its GGUF load). llama.cpp
stores Llama's q/k rows permuted for its interleaved RoPE; we permute them back to HF's
half-split layout. A file without ``output.weight`` ties the output head to the embedding.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from gguf.constants import GGMLQuantizationType as Q
from gguf.quants import dequantize

from engine import quant
from engine.config import LlamaConfig
from engine.device import Placement, pick_placement
from engine.errors import CorruptModelFile, UnsupportedArchitecture, UnsupportedQuantType
from engine.gguf_file import GGUFFile, TensorInfo, read_gguf, type_name
from engine.llama import LlamaForCausalLM
from engine.loader import LoadedModel
from engine.quant import QuantizedWeight
from engine.tokenizer import Tokenizer

SUPPORTED_TYPES: frozenset[Q] = frozenset({
    Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0,
    Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K,
})

# GGUF tensor name (per layer after "blk.{i}.") -> HF name after "model.layers.{i}."
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def load_gguf(path: str | os.PathLike[str], placement: Placement | None = None) -> LoadedModel:
    """Model, config and tokenizer from one GGUF file."""
    path = os.fspath(path)
    placement = placement or pick_placement()
    gf = read_gguf(path)
    config = gguf_config(gf)
    with ThreadPoolExecutor(max_workers=1) as side:  # build the tokenizer while dequantising
        tokenizer_job = side.submit(Tokenizer.from_gguf_metadata, gf.metadata, path)
        state = gguf_state_dict(gf, config, placement)
        tokenizer = tokenizer_job.result()
    try:
        model = LlamaForCausalLM.from_state_dict(config, state, placement.device, placement.dtype)
    except RuntimeError as e:  # a tensor missing, or with a shape that contradicts the metadata
        raise CorruptModelFile(path, f"tensors do not match the metadata: {e}") from e
    if (placement.device.type == "cpu" and placement.dtype == torch.float32
            and quant.kernel_available()):
        model.use_quantized(gguf_quantized_weights(gf, config))
    return LoadedModel(path, config, model, tokenizer)


def gguf_quantized_weights(gf: GGUFFile, config: LlamaConfig) -> dict[str, QuantizedWeight]:
    """The file's Q4_0/Q4_1/Q8_0 linear weights repacked for the decode kernel, by module name
    (fused like the model's modules; a module whose parts are stored otherwise is left out)."""
    permuted = config.model_type == "llama"

    def part(name: str, n_heads: int = 0) -> QuantizedWeight | None:
        info = gf.tensors[name]
        if info.ggml_type not in quant.KERNEL_TYPES or len(info.shape) != 2:
            return None
        qw = QuantizedWeight.from_blocks(gf.raw(info), Q(info.ggml_type), info.shape)
        if n_heads and permuted:  # undo llama.cpp's q/k row permutation, as for the fp32 copy
            half = qw.out_features // n_heads // 2
            qw = qw.rows(torch.arange(qw.out_features).view(n_heads, half, 2).transpose(1, 2)
                         .reshape(-1))
        return qw

    def fused(*parts: QuantizedWeight | None) -> QuantizedWeight | None:
        present = [p for p in parts if p is not None]
        return QuantizedWeight.stack(present) if len(present) == len(parts) else None

    out: dict[str, QuantizedWeight | None] = {}
    for i in range(config.num_hidden_layers):
        blk, layer = f"blk.{i}.", f"model.layers.{i}."
        out[layer + "self_attn.qkv_proj"] = fused(
            part(blk + "attn_q.weight", config.num_attention_heads),
            part(blk + "attn_k.weight", config.num_key_value_heads), part(blk + "attn_v.weight"))
        out[layer + "self_attn.o_proj"] = part(blk + "attn_output.weight")
        out[layer + "mlp.gate_up_proj"] = fused(part(blk + "ffn_gate.weight"),
                                                part(blk + "ffn_up.weight"))
        out[layer + "mlp.down_proj"] = part(blk + "ffn_down.weight")
    head = "token_embd.weight" if config.tie_word_embeddings else "output.weight"
    out["lm_head"] = part(head)
    return {name: qw for name, qw in out.items() if qw is not None}


def gguf_config(gf: GGUFFile) -> LlamaConfig:
    embd = gf.tensors.get("token_embd.weight")
    if embd is None or len(embd.shape) != 2:
        arch = gf.metadata.get("general.architecture")
        if arch not in ("llama", "qwen2"):
            raise UnsupportedArchitecture(
                gf.path, f"GGUF architecture {arch!r} is not supported (supported: llama, qwen2)")
        raise CorruptModelFile(gf.path, "no 2-D token_embd.weight tensor")
    freq_factors = None
    if "rope_freqs.weight" in gf.tensors:
        factors = dequantize_tensor(gf, gf.tensors["rope_freqs.weight"])
        freq_factors = tuple(float(x) for x in factors.reshape(-1))
    return LlamaConfig.from_gguf_metadata(
        gf.metadata,
        path=gf.path,
        vocab_size=embd.shape[0],
        tie_word_embeddings="output.weight" not in gf.tensors,
        attention_bias="blk.0.attn_q.bias" in gf.tensors,
        rope_freq_factors=freq_factors,
    )


# HF projections we keep fused: (layer-relative HF module) -> (fused module, part index)
_FUSED_PARTS = {
    "self_attn.q_proj": ("self_attn.qkv_proj", 0),
    "self_attn.k_proj": ("self_attn.qkv_proj", 1),
    "self_attn.v_proj": ("self_attn.qkv_proj", 2),
    "mlp.gate_proj": ("mlp.gate_up_proj", 0),
    "mlp.up_proj": ("mlp.gate_up_proj", 1),
}


def gguf_state_dict(gf: GGUFFile, config: LlamaConfig,
                    placement: Placement) -> dict[str, torch.Tensor]:
    """Every weight, dequantised once, on ``placement``'s device and dtype.

    Keys are HF names, except that q/k/v and gate/up are dequantised straight into their fused
    buffers (``...self_attn.qkv_proj.weight``, ``...mlp.gate_up_proj.weight``, the model's own
    parameter names), so no tensor is copied a second time to be concatenated.
    """
    wanted: dict[str, TensorInfo] = {}
    for name, hf_name in _GLOBAL_NAMES.items():
        if name in gf.tensors:
            wanted[hf_name] = gf.tensors[name]
    for i in range(config.num_hidden_layers):
        for name, hf_name in _LAYER_NAMES.items():
            if f"blk.{i}.{name}" in gf.tensors:
                wanted[f"model.layers.{i}.{hf_name}"] = gf.tensors[f"blk.{i}.{name}"]
            elif name.endswith(".weight"):
                raise CorruptModelFile(gf.path, f"tensor 'blk.{i}.{name}' is missing")
    for info in wanted.values():
        if info.ggml_type not in SUPPORTED_TYPES:
            supported = ", ".join(sorted(Q(t).name for t in SUPPORTED_TYPES))
            raise UnsupportedQuantType(
                gf.path, f"tensor {info.name!r} is stored as {type_name(info.ggml_type)}, which "
                f"is not supported (supported: {supported})")

    part_rows = {"self_attn.qkv_proj": [config.q_size, config.kv_size, config.kv_size],
                 "mlp.gate_up_proj": [config.intermediate_size] * 2}
    # Llama GGUFs have q/k rows permuted for llama.cpp's interleaved RoPE; Qwen2 files are not.
    heads = {"self_attn.q_proj": config.num_attention_heads,
             "self_attn.k_proj": config.num_key_value_heads} if config.model_type == "llama" else {}

    state: dict[str, torch.Tensor] = {}
    parts_seen: dict[str, int] = {}
    jobs: list[tuple[TensorInfo, torch.Tensor | None, str, int]] = []  # (src, dst, name, heads)
    for hf_name, info in wanted.items():
        module, _, kind = hf_name.rpartition(".")  # "model.layers.3.self_attn.q_proj", "weight"
        layer, rel = module.rsplit(".", 2)[0], ".".join(module.split(".")[-2:])
        if rel not in _FUSED_PARTS:
            jobs.append((info, None, hf_name, 0))
            continue
        fused, index = _FUSED_PARTS[rel]
        key = f"{layer}.{fused}.{kind}"
        rows = part_rows[fused]
        if key not in state:
            shape = (sum(rows), *info.shape[1:])
            state[key] = torch.empty(shape, dtype=torch.float32)
        parts_seen[key] = parts_seen.get(key, 0) + 1
        start = sum(rows[:index])
        jobs.append((info, state[key][start:start + rows[index]], hf_name, heads.get(rel, 0)))
    for key, seen in parts_seen.items():  # a fused buffer with a missing part stays garbage
        expected = len(part_rows[".".join(key.split(".")[-3:-1])])
        if seen != expected:
            raise CorruptModelFile(gf.path, f"{key}: found {seen} of its {expected} parts")

    def fill(job: tuple[TensorInfo, torch.Tensor | None, str, int]) -> None:
        info, dst, hf_name, n_heads = job
        if dst is None:
            state[hf_name] = torch.from_numpy(dequantize_tensor(gf, info))  # atomic under GIL
            return
        if info.shape != tuple(dst.shape):
            raise CorruptModelFile(gf.path, f"tensor {info.name!r} has shape {info.shape}, "
                                   f"expected {tuple(dst.shape)} from the metadata")
        if not n_heads:
            dequantize_tensor(gf, info, out=dst.numpy())  # straight into the fused buffer
            return
        src = torch.from_numpy(dequantize_tensor(gf, info))
        half = src.shape[0] // n_heads // 2  # undo llama.cpp's permute while copying into place
        dst.view(n_heads, 2, half, *src.shape[1:]).copy_(
            src.view(n_heads, half, 2, *src.shape[1:]).transpose(1, 2))

    # numpy's kernels release the GIL, so threads overlap real work; biggest tensors first.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(fill, sorted(jobs, key=lambda job: -job[0].nbytes)))
    return {k: v.to(device=placement.device, dtype=placement.dtype) for k, v in state.items()}


def dequantize_tensor(gf: GGUFFile, info: TensorInfo, out: np.ndarray | None = None) -> np.ndarray:
    """The tensor as fp32 of ``info.shape``, written into ``out`` (C-contiguous) if given.

    Q4_0, Q4_1 and Q8_0 (what llama.cpp's popular files use) have fast paths here that write
    straight into ``out`` with no full-size temporaries; they are bit-identical to
    ``gguf.quants.dequantize`` (tested), which handles every other type.
    """
    if out is None:
        out = np.empty(info.shape, dtype=np.float32)
    assert out.flags.c_contiguous and out.dtype == np.float32 and out.shape == info.shape
    raw = gf.raw(info)
    qtype = Q(info.ggml_type)
    fast = _FAST.get(qtype)
    if fast is not None:
        fast(raw, out.reshape(-1))
    elif qtype == Q.F32:
        out[...] = raw.view(np.float32).reshape(info.shape)
    else:
        rows = int(np.prod(info.shape[:-1])) if len(info.shape) > 1 else 1
        out[...] = dequantize(raw.reshape(rows, -1), qtype).reshape(info.shape)
    return out


_CHUNK = 1 << 14  # blocks per step: temporaries stay in cache


def _f16_scale(blocks: np.ndarray, at: int) -> np.ndarray:
    """The fp16 scale stored at byte ``at`` of every block, as fp32 ``[n, 1]``."""
    return blocks[:, at:at + 2].copy().view(np.float16).astype(np.float32)


def _q8_0(raw: np.ndarray, out: np.ndarray) -> None:  # block: d f16, 32 x int8; x = q * d
    blocks, values = raw.reshape(-1, 34), out.reshape(-1, 32)
    for s in range(0, len(blocks), _CHUNK):
        b = blocks[s:s + _CHUNK]
        np.multiply(b[:, 2:].view(np.int8), _f16_scale(b, 0), out=values[s:s + _CHUNK])


def _q4_0(raw: np.ndarray, out: np.ndarray) -> None:  # d f16, 16 bytes: lo nibbles, hi nibbles
    blocks, values = raw.reshape(-1, 18), out.reshape(-1, 2, 16)
    for s in range(0, len(blocks), _CHUNK):
        b, v = blocks[s:s + _CHUNK], values[s:s + _CHUNK]
        d, qs = _f16_scale(b, 0), b[:, 2:]
        np.multiply((qs & np.uint8(15)).view(np.int8) - np.int8(8), d, out=v[:, 0])
        np.multiply((qs >> np.uint8(4)).view(np.int8) - np.int8(8), d, out=v[:, 1])


def _q4_1(raw: np.ndarray, out: np.ndarray) -> None:  # d f16, m f16, 16 bytes; x = q * d + m
    blocks, values = raw.reshape(-1, 20), out.reshape(-1, 2, 16)
    for s in range(0, len(blocks), _CHUNK):
        b, v = blocks[s:s + _CHUNK], values[s:s + _CHUNK]
        d, m, qs = _f16_scale(b, 0), _f16_scale(b, 2), b[:, 4:]
        np.multiply(qs & np.uint8(15), d, out=v[:, 0])
        np.multiply(qs >> np.uint8(4), d, out=v[:, 1])
        flat = v.reshape(-1, 32)
        np.add(flat, m, out=flat)


def _f16(raw: np.ndarray, out: np.ndarray) -> None:
    out[...] = raw.view(np.float16)


_FAST = {Q.Q8_0: _q8_0, Q.Q4_0: _q4_0, Q.Q4_1: _q4_1, Q.F16: _f16}

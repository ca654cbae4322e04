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

from engine.config import LlamaConfig
from engine.device import Placement, pick_placement
from engine.errors import CorruptModelFile, UnsupportedArchitecture, UnsupportedQuantType
from engine.gguf_file import GGUFFile, TensorInfo, read_gguf, type_name
from engine.llama import LlamaForCausalLM
from engine.loader import LoadedModel
from engine.tokenizer import Tokenizer

SUPPORTED_TYPES = frozenset({
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
    tokenizer = Tokenizer.from_gguf_metadata(gf.metadata, path)
    state = gguf_state_dict(gf, config, placement)
    model = LlamaForCausalLM.from_state_dict(config, state, placement.device, placement.dtype)
    return LoadedModel(path, config, model, tokenizer)


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
        freq_factors = tuple(float(x) for x in _dequantize(gf, gf.tensors["rope_freqs.weight"]))
    return LlamaConfig.from_gguf_metadata(
        gf.metadata,
        path=gf.path,
        vocab_size=embd.shape[0],
        tie_word_embeddings="output.weight" not in gf.tensors,
        attention_bias="blk.0.attn_q.bias" in gf.tensors,
        rope_freq_factors=freq_factors,
    )


def gguf_state_dict(gf: GGUFFile, config: LlamaConfig,
                    placement: Placement) -> dict[str, torch.Tensor]:
    """Every weight, dequantised, under its HF name, on ``placement``'s device and dtype."""
    wanted: dict[str, TensorInfo] = {}
    for name, hf_name in _GLOBAL_NAMES.items():
        if name in gf.tensors:
            wanted[hf_name] = gf.tensors[name]
    for i in range(config.num_hidden_layers):
        for name, hf_name in _LAYER_NAMES.items():
            if f"blk.{i}.{name}" in gf.tensors:
                wanted[f"model.layers.{i}.{hf_name}"] = gf.tensors[f"blk.{i}.{name}"]
    for info in wanted.values():
        if info.ggml_type not in SUPPORTED_TYPES:
            supported = ", ".join(sorted(Q(t).name for t in SUPPORTED_TYPES))
            raise UnsupportedQuantType(
                gf.path, f"tensor {info.name!r} is stored as {type_name(info.ggml_type)}, which "
                f"is not supported (supported: {supported})")

    # Llama GGUFs have q/k rows permuted for llama.cpp's interleaved RoPE; Qwen2 files are not.
    permute = config.model_type == "llama"
    heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}

    def convert(item: tuple[str, TensorInfo]) -> tuple[str, torch.Tensor]:
        hf_name, info = item
        t = torch.from_numpy(_dequantize(gf, info))
        proj = hf_name.split(".")[-2]
        if permute and proj in heads:
            t = _unpermute(t, heads[proj])
        return hf_name, t.to(device=placement.device, dtype=placement.dtype)

    # numpy releases the GIL inside its kernels, so two threads overlap real work.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        state = dict(pool.map(convert, sorted(wanted.items(), key=lambda kv: -kv[1].nbytes)))
    return state


def _dequantize(gf: GGUFFile, info: TensorInfo) -> np.ndarray:
    """fp32 array of ``info.shape``; a fresh, writable array (never a view of the mmap)."""
    raw = gf.raw(info)
    qtype = Q(info.ggml_type)
    if qtype == Q.F32:
        return raw.view(np.float32).reshape(info.shape).copy()
    rows = int(np.prod(info.shape[:-1])) if len(info.shape) > 1 else 1
    out = dequantize(raw.reshape(rows, -1), qtype)
    return np.ascontiguousarray(out, dtype=np.float32).reshape(info.shape)


def _unpermute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's ``permute``: per head, rows (hd/2, 2) interleaved -> (2, hd/2) halves."""
    half = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)

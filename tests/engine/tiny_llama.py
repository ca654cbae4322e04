"""Tiny random Llama models and GGUF files for engine tests (built in milliseconds)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def hf_config(**overrides: Any) -> Any:
    """A transformers LlamaConfig for a 2-layer model with GQA."""
    from transformers import LlamaConfig

    base: dict[str, Any] = dict(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, tie_word_embeddings=False, attn_implementation="eager",
    )
    base.update(overrides)
    return LlamaConfig(**base)


def hf_model(config: Any, seed: int = 0) -> Any:
    """A random transformers model, weights spread out so logits are far from ties."""
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cls = Qwen2ForCausalLM if config.model_type == "qwen2" else LlamaForCausalLM
    model = cls(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.08 if "embed" not in name else 1.0)
    return model


# -- a tiny byte-level BPE vocabulary, as a GGUF stores it ----------------------------------------
def byte_alphabet() -> list[str]:
    from engine.tokenizer import _byte_alphabet

    return [_byte_alphabet()[b] for b in range(256)]


def tiny_vocab(n_vocab: int) -> tuple[list[str], list[str], list[int]]:
    """(tokens, merges, token types): 3 control tokens, 256 bytes, a few merges, padding."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    alphabet = byte_alphabet()
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
    merged = ["Ġt", "he", "Ġthe", "in", "Ġa"]
    tokens = specials + alphabet + merged
    tokens += [f"<pad_{i}>" for i in range(n_vocab - len(tokens))]
    types = [3] * len(specials) + [1] * (len(tokens) - len(specials))
    return tokens, merges, types


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """What llama.cpp's convert_hf_to_gguf.py does to Llama q/k rows (the loader undoes it)."""
    return (w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_gguf(path: Path, hf: Any | None = None, *, arch: str = "llama", qtype: Any = None,
               tokenizer: bool = True, chat_template: str | None = CHATML, pre: str = "smollm",
               extra_tensor: tuple[str, np.ndarray, Any] | None = None) -> Path:
    """Write ``hf`` (a transformers Llama) as a llama.cpp-style GGUF."""
    import gguf
    from gguf.quants import quantize

    hf = hf if hf is not None else hf_model(hf_config(vocab_size=280))
    cfg = hf.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    if tokenizer:
        tokens, merges, types = tiny_vocab(cfg.vocab_size)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        if chat_template:
            w.add_chat_template(chat_template)

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
             "output_norm.weight", "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm.weight": "attn_norm.weight",
                 "self_attn.q_proj.weight": "attn_q.weight",
                 "self_attn.k_proj.weight": "attn_k.weight",
                 "self_attn.v_proj.weight": "attn_v.weight",
                 "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
                 "self_attn.v_proj.bias": "attn_v.bias",
                 "self_attn.o_proj.weight": "attn_output.weight",
                 "post_attention_layernorm.weight": "ffn_norm.weight",
                 "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                 "mlp.down_proj.weight": "ffn_down.weight"}
    state = hf.state_dict()
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    for key, t in state.items():
        rest = ""
        if key.startswith("model.layers."):
            i, rest = key[len("model.layers."):].split(".", 1)
            name = f"blk.{i}.{per_layer[rest]}"
        else:
            name = names[key]
        a = t.detach().float().numpy()
        if arch == "llama" and rest.endswith(("q_proj.weight", "k_proj.weight")):
            heads = cfg.num_attention_heads if "q_proj" in rest else cfg.num_key_value_heads
            a = llama_cpp_permute(a, heads)
        if qtype is not None and a.ndim == 2:
            w.add_tensor(name, quantize(a, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, a)
    if extra_tensor is not None:
        name, data, raw = extra_tensor
        w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path

"""Shape and hyper-parameters of a Llama-family decoder, read from GGUF metadata or a config.json.

One dataclass covers Llama 2/3, Mistral, Qwen2 and SmolLM: they differ only in head counts, RoPE
settings, whether q/k/v have a bias (Qwen2) and whether the output head shares the embedding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import UnsupportedArchitecture

# HF `model_type` values whose checkpoints load into our decoder unchanged.
HF_MODEL_TYPES = ("llama", "mistral", "qwen2")
# GGUF `general.architecture` values we load. llama.cpp writes Mistral and SmolLM as "llama".
GGUF_ARCHITECTURES = ("llama", "qwen2")


@dataclass(frozen=True)
class RopeScaling:
    """How RoPE frequencies are stretched for long context.

    ``rope_type``: "default" (none), "linear" (positions divided by ``factor``), "llama3"
    (Llama 3.1's smooth per-frequency scaling) or "freq_factors" (GGUF: llama.cpp bakes llama3
    scaling into a ``rope_freqs`` tensor of per-frequency divisors, carried as ``freq_factors``).
    """

    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192
    freq_factors: tuple[float, ...] | None = None


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling = field(default_factory=RopeScaling)
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # bias on q/k/v projections (Qwen2; Llama with attention_bias)
    attention_out_bias: bool = False  # bias on o_proj (only Llama with attention_bias=True)
    sliding_window: int | None = None  # Mistral v0.1: attention span limit; we cap context to it
    model_type: str = "llama"

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @classmethod
    def from_hf_dict(cls, cfg: Mapping[str, Any], path: str = "config.json") -> LlamaConfig:
        """Build from a HF ``config.json`` (old ``rope_scaling`` or new ``rope_parameters``)."""
        model_type = str(cfg.get("model_type", "llama"))
        if model_type not in HF_MODEL_TYPES:
            raise UnsupportedArchitecture(
                path, f"model_type {model_type!r} is not supported (supported: {HF_MODEL_TYPES})"
            )
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise UnsupportedArchitecture(path, f"hidden_act {act!r} is not supported (only silu)")
        if cfg.get("mlp_bias"):
            raise UnsupportedArchitecture(path, "mlp_bias=True is not supported")
        n_heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        head_dim = int(cfg.get("head_dim") or hidden // n_heads)
        rope = dict(cfg.get("rope_parameters") or {})
        rope.update(cfg.get("rope_scaling") or {})
        theta = float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        if model_type == "qwen2":
            qkv_bias, o_bias = True, False  # Qwen2 always has q/k/v bias and none on o_proj
        else:
            qkv_bias = o_bias = bool(cfg.get("attention_bias", False))
        window = cfg.get("sliding_window")
        if model_type == "qwen2" and not cfg.get("use_sliding_window", False):
            window = None
        return cls(
            vocab_size=int(cfg["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_hidden_layers=int(cfg["num_hidden_layers"]),
            num_attention_heads=n_heads,
            num_key_value_heads=int(cfg.get("num_key_value_heads") or n_heads),
            head_dim=head_dim,
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            rope_scaling=_hf_rope_scaling(rope, cfg, path),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=qkv_bias,
            attention_out_bias=o_bias,
            sliding_window=int(window) if window else None,
            model_type=model_type,
        )

    @classmethod
    def from_gguf_metadata(
        cls,
        meta: Mapping[str, Any],
        *,
        path: str,
        vocab_size: int,
        tie_word_embeddings: bool,
        attention_bias: bool,
        rope_freq_factors: tuple[float, ...] | None = None,
    ) -> LlamaConfig:
        """Build from GGUF key/values. Facts only the tensor table knows are passed in."""
        arch = str(meta.get("general.architecture", ""))
        if arch not in GGUF_ARCHITECTURES:
            raise UnsupportedArchitecture(
                path, f"GGUF architecture {arch!r} is not supported "
                f"(supported: {', '.join(GGUF_ARCHITECTURES)})")

        def get(key: str, default: Any = None) -> Any:
            full = f"{arch}.{key}"
            if full not in meta and default is None:
                raise UnsupportedArchitecture(path, f"GGUF metadata lacks required key {full!r}")
            return meta.get(full, default)

        n_heads = int(get("attention.head_count"))
        hidden = int(get("embedding_length"))
        head_dim = int(get("attention.key_length", hidden // n_heads))
        rope_dim = int(get("rope.dimension_count", head_dim))
        if rope_dim != head_dim:
            raise UnsupportedArchitecture(
                path, f"partial RoPE ({rope_dim} of {head_dim} dims) is not supported")
        scaling_type = str(get("rope.scaling.type", "none"))
        if rope_freq_factors is not None:
            scaling = RopeScaling(rope_type="freq_factors", freq_factors=rope_freq_factors)
        elif scaling_type == "linear":
            scaling = RopeScaling(rope_type="linear", factor=float(get("rope.scaling.factor")))
        elif scaling_type == "none":
            scaling = RopeScaling()
        else:
            raise UnsupportedArchitecture(path, f"RoPE scaling {scaling_type!r} is not supported")
        return cls(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=int(get("feed_forward_length")),
            num_hidden_layers=int(get("block_count")),
            num_attention_heads=n_heads,
            num_key_value_heads=int(get("attention.head_count_kv", n_heads)),
            head_dim=head_dim,
            rms_norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
            rope_theta=float(get("rope.freq_base", 10000.0)),
            rope_scaling=scaling,
            max_position_embeddings=int(get("context_length", 2048)),
            tie_word_embeddings=tie_word_embeddings,
            attention_bias=attention_bias,
            attention_out_bias=False,
            model_type=arch,
        )


def _hf_rope_scaling(rope: Mapping[str, Any], cfg: Mapping[str, Any], path: str) -> RopeScaling:
    rope_type = str(rope.get("rope_type", rope.get("type", "default")))
    if rope_type == "default":
        return RopeScaling()
    if rope_type == "linear":
        return RopeScaling(rope_type="linear", factor=float(rope["factor"]))
    if rope_type == "llama3":
        return RopeScaling(
            rope_type="llama3",
            factor=float(rope["factor"]),
            low_freq_factor=float(rope["low_freq_factor"]),
            high_freq_factor=float(rope["high_freq_factor"]),
            original_max_position_embeddings=int(rope.get(
                "original_max_position_embeddings", cfg.get("max_position_embeddings", 8192))),
        )
    raise UnsupportedArchitecture(path, f"RoPE scaling type {rope_type!r} is not supported")

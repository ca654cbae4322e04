"""`BertConfig`: the few numbers a BERT-family encoder needs, read from a HF ``config.json``.

Only what the engine implements is accepted: ``model_type == "bert"`` with absolute position
embeddings and a GELU/ReLU feed-forward. Anything else fails loudly with
`UnsupportedArchitecture` instead of silently computing the wrong function.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.errors import ModelLoadError, ModelNotFound, UnsupportedArchitecture

# HF `hidden_act` names we implement. "gelu" is the exact erf form (what BERT was trained with);
# the others are the tanh approximation under the names different checkpoints use.
SUPPORTED_ACTIVATIONS = frozenset({"gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu"})


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0
    # Dropout only matters while fine-tuning (module in train mode); inference ignores it.
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1

    def __post_init__(self) -> None:
        # ValueError here; `from_dict` re-raises it as UnsupportedArchitecture with the path.
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ValueError(
                f"hidden_act={self.hidden_act!r} is not one of {sorted(SUPPORTED_ACTIVATIONS)}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> BertConfig:
        """Build from a parsed HF config; `source` (usually the file path) goes in errors."""
        model_type = raw.get("model_type")
        if model_type != "bert":
            raise UnsupportedArchitecture(
                source,
                f"model_type={model_type!r} (architectures={raw.get('architectures')}) is not a "
                "BERT encoder; the embedder only implements model_type 'bert'",
            )
        pos_type = raw.get("position_embedding_type", "absolute")
        if pos_type != "absolute":
            raise UnsupportedArchitecture(
                source, f"position_embedding_type={pos_type!r} is not supported (only 'absolute')"
            )
        if raw.get("is_decoder") or raw.get("add_cross_attention"):
            raise UnsupportedArchitecture(source, "decoder / cross-attention BERT is not supported")
        try:
            return cls(
                vocab_size=int(raw["vocab_size"]),
                hidden_size=int(raw["hidden_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=int(raw["num_attention_heads"]),
                intermediate_size=int(raw["intermediate_size"]),
                max_position_embeddings=int(raw.get("max_position_embeddings", 512)),
                type_vocab_size=int(raw.get("type_vocab_size", 2)),
                layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
                hidden_act=str(raw.get("hidden_act", "gelu")),
                pad_token_id=int(raw.get("pad_token_id") or 0),
                hidden_dropout_prob=float(raw.get("hidden_dropout_prob", 0.1)),
                attention_probs_dropout_prob=float(raw.get("attention_probs_dropout_prob", 0.1)),
            )
        except KeyError as exc:
            raise ModelLoadError(source, f"BERT config is missing required key {exc}") from None
        except (TypeError, ValueError) as exc:
            raise UnsupportedArchitecture(source, str(exc)) from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> BertConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelNotFound(str(path), "config.json not found") from None
        except (OSError, ValueError) as exc:
            raise ModelLoadError(str(path), f"cannot read config.json: {exc}") from None
        if not isinstance(raw, dict):
            raise ModelLoadError(str(path), "config.json is not a JSON object")
        return cls.from_dict(raw, source=str(path))

    def to_hf_dict(self) -> dict[str, Any]:
        """A config.json that both this engine and transformers' `BertModel` can load."""
        return {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "position_embedding_type": "absolute",
            **asdict(self),
        }

"""A tiny random-weight Llama with a byte-level BPE tokenizer, saved as a Hugging Face-style
directory (config.json, tokenizer.json, tokenizer_config.json, model.safetensors) so test
processes (and worker subprocesses) load bit-identical weights in milliseconds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from engine.async_engine import AsyncEngine, EngineConfig
from engine.config import LlamaConfig
from engine.llama import LlamaForCausalLM
from engine.tokenizer import Tokenizer

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "How do I reset my password? Open Settings and choose Reset password.",
    "Where is my invoice? Invoices are under Billing, one per month.",
    "Can I export my data to CSV? Yes: Reports, then Export, then CSV.",
    "The quick brown fox jumps over the lazy dog 0123456789 times.",
    "User: hello there. Assistant: hi, how can I help you today?",
] * 4


def build_tokenizer() -> HFTokenizer:
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def save_tiny(directory: Path, seed: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    tok.save(str(directory / "tokenizer.json"))
    eos = tok.token_to_id("<|im_end|>")
    cfg = {"model_type": "llama", "vocab_size": tok.get_vocab_size(), "hidden_size": 64,
           "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 1024,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
           "hidden_act": "silu", "eos_token_id": eos}
    (directory / "config.json").write_text(json.dumps(cfg))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|im_end|>", "chat_template": CHATML}))
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig.from_hf_dict(cfg))
    # Spread the random weights a little so logits are far from ties (greedy comparisons).
    state = {k: (v * 2.0 if "proj" in k or "lm_head" in k else v).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    return directory


def load_tiny(directory: Path) -> tuple[LlamaForCausalLM, Tokenizer]:
    cfg = json.loads((directory / "config.json").read_text())
    model = LlamaForCausalLM.from_state_dict(
        LlamaConfig.from_hf_dict(cfg), load_file(str(directory / "model.safetensors")),
        device="cpu", dtype=torch.float32)
    return model, Tokenizer.from_hf_dir(str(directory))


def tiny_engine(directory: Path, **config: int) -> AsyncEngine:
    model, tokenizer = load_tiny(directory)
    defaults: dict[str, int] = {"kv_budget_bytes": 64 << 20, "max_len": 512}
    defaults.update(config)
    return AsyncEngine(model, tokenizer, EngineConfig(**defaults), model_name="tiny")  # type: ignore[arg-type]


class ObservedModel:
    """Wraps a model to record each forward's input shape and, with ``delay_s``, make it slow
    enough that a test can act mid-stream (cancel, kill, submit more)."""

    def __init__(self, model: LlamaForCausalLM, delay_s: float = 0.0) -> None:
        self._model = model
        self._delay_s = delay_s
        self.shapes: list[tuple[int, int]] = []  # (rows, tokens per row) of each forward
        # the shared_prefix groups (rows, length) of each forward (None: not given)
        self.shared: list[list[tuple[list[int], int]] | None] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._model, name)

    def __call__(self, input_ids: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        self.shapes.append((int(input_ids.shape[0]), int(input_ids.shape[1])))
        self.shared.append(kwargs.get("shared_prefix"))  # type: ignore[arg-type]
        time.sleep(self._delay_s)
        out: torch.Tensor = self._model(input_ids, *args, **kwargs)
        return out


def observe(engine: AsyncEngine, delay_s: float = 0.0) -> ObservedModel:
    observed = ObservedModel(engine.core.model, delay_s)
    engine.core.model = observed  # type: ignore[assignment]
    return observed


def slow_down(engine: AsyncEngine, delay_s: float) -> None:
    observe(engine, delay_s)


def metric(engine: AsyncEngine, name: str, **labels: str) -> float:
    """A sample from the engine's Prometheus registry (0 when never set)."""
    return engine.metrics.registry.get_sample_value(name, labels or None) or 0.0

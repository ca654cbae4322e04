"""Hugging Face directories (config.json + safetensors + tokenizer.json) load directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.device import Placement
from engine.errors import (
    CorruptModelFile,
    MissingTokenizer,
    ModelLoadError,
    UnsupportedArchitecture,
)
from engine.gguf_file import read_gguf
from engine.hf_loader import load_hf_dir
from engine.loader import load_model
from engine.tokenizer import Tokenizer
from tests.engine.tiny_llama import CHATML, hf_config, hf_model, write_gguf

CPU = Placement(torch.device("cpu"), torch.float32)


def save_dir(directory: Path, ref: Any, tmp_path: Path) -> Path:
    ref.save_pretrained(str(directory), safe_serialization=True)
    gguf = write_gguf(tmp_path / "tok.gguf", hf_model(hf_config(vocab_size=280)))
    Tokenizer.from_gguf_metadata(read_gguf(gguf).metadata, str(gguf)).backend.save(
        str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|im_end|>", "chat_template": CHATML}))
    return directory


def qwen2_config() -> Any:
    from transformers import Qwen2Config

    base = {k: v for k, v in hf_config(vocab_size=280).to_dict().items()
            if k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "rms_norm_eps")}
    return Qwen2Config(**base, tie_word_embeddings=True,
                       attn_implementation="eager")  # type: ignore[call-arg]


@pytest.mark.parametrize("kind", ["llama", "llama-tied", "qwen2"])
def test_safetensors_directory_matches_transformers(tmp_path: Path, kind: str) -> None:
    cfg = {"llama": lambda: hf_config(vocab_size=280),
           "llama-tied": lambda: hf_config(vocab_size=280, tie_word_embeddings=True),
           "qwen2": qwen2_config}[kind]()
    ref = hf_model(cfg)
    loaded = load_model(save_dir(tmp_path / "model", ref, tmp_path), CPU)
    assert loaded.tokenizer.eos_token_ids == (2,)
    ids = torch.randint(3, 280, (2, 10))
    with torch.no_grad():
        expected = ref(ids).logits
    torch.testing.assert_close(loaded.model(ids, loaded.model.new_cache(2, 16), [0, 0]), expected)


def test_errors_name_the_directory(tmp_path: Path) -> None:
    ref = hf_model(hf_config(vocab_size=280))
    good = save_dir(tmp_path / "model", ref, tmp_path)

    (good / "tokenizer.json").rename(good / "moved.json")
    with pytest.raises(MissingTokenizer, match=str(good)):
        load_hf_dir(good, CPU)
    (good / "moved.json").rename(good / "tokenizer.json")

    weights = good / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptModelFile, match=r"model\.safetensors"):
        load_hf_dir(good, CPU)
    weights.write_bytes(data)

    config = json.loads((good / "config.json").read_text())
    (good / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(ModelLoadError, match="do not match"):
        load_hf_dir(good, CPU)
    (good / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(UnsupportedArchitecture, match="gpt2"):
        load_hf_dir(good, CPU)

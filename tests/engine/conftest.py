"""Engine fixtures. The real SmolLM2 model and transformers' load of it are session-scoped:
transformers takes ~40 s to load the GGUF on this machine, so it happens at most once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.defaults import default_model_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def smollm_path() -> str:
    path = default_model_path()
    if not path.endswith(".gguf"):
        pytest.skip("SUPPORTBOT_MODEL points at a non-GGUF model")
    return path


@pytest.fixture(scope="session")
def smollm_generator(smollm_path: str) -> Any:
    from engine.generator import load_generator

    return load_generator(smollm_path)


@pytest.fixture(scope="session")
def hf_gguf_tokenizer(smollm_path: str) -> Any:
    from transformers import AutoTokenizer

    path = Path(smollm_path)
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.fixture(scope="session")
def hf_gguf_model(smollm_path: str) -> Iterator[Any]:
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(smollm_path)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=torch.float32).eval()
    yield model


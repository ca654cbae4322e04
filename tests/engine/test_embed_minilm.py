"""The packaged all-MiniLM-L6-v2 through our engine vs transformers `AutoModel` + mean pooling.

Loads from the installed package's local directory only (HF_HUB_OFFLINE=1), never the hub.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it at import

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from engine.bert_packed import PackedEncoder
from engine.device import Placement
from engine.embedder import Embedder, default_model_dir, load_embedder

pytestmark = pytest.mark.slow

SENTENCES = [
    "How do I reset my password?",
    "hi",
    "",
    "Why was my credit card charged twice for the March invoice?",
    "The Slack integration stopped posting messages after we rotated the bot token.",
    "Ünïcödé café, naïve résumé — 日本語のテキスト and emoji 🙂🚀",
    "ERROR 502: upstream timed out (110: Connection timed out) while reading response header",
    "def embed(texts: list[str]) -> torch.Tensor:  # code in a support ticket",
    "cancel cancel cancel cancel cancel",
    # Longer than the 128 tokens baked into tokenizer.json, shorter than the 256 we honour.
    "My team cannot log in with Google SSO since this morning, we get redirected back "
    "to the login page over and over again. " * 5,
    # Longer than 256 tokens: both sides truncate at max_seq_length=256.
    "The dashboard is very slow to load and sometimes times out completely. " * 30,
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return load_embedder(placement=Placement(torch.device("cpu"), torch.float32))


def reference_embeddings(texts: list[str], max_length: int) -> torch.Tensor:
    model_dir = str(default_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)


def test_packaged_model_metadata(embedder: Embedder) -> None:
    assert embedder.dim == 384
    assert embedder.max_length == 256  # sentence_bert_config.json, not tokenizer.json's 128
    assert (default_model_dir() / "config.json").is_file()


def test_matches_transformers_mean_pooling(embedder: Embedder) -> None:
    ours = embedder.embed(SENTENCES, batch_size=4)
    ref = reference_embeddings(SENTENCES, embedder.max_length)
    cosine = (ours * ref).sum(-1)
    assert cosine.min().item() >= 0.9999, cosine.tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_packed_path_in_either_precision_matches_transformers(embedder: Embedder,
                                                              dtype: torch.dtype) -> None:
    """Both settings of SUPPORTBOT_EMBED_PRECISION, whatever this CPU picks by default."""
    ours = PackedEncoder(embedder.model, dtype).encode(embedder.token_ids(SENTENCES))
    ref = reference_embeddings(SENTENCES, embedder.max_length)
    cosine = (ours * ref).sum(-1)
    assert cosine.min().item() >= 0.9999, cosine.tolist()


def test_similar_questions_are_closer_than_unrelated_ones(embedder: Embedder) -> None:
    a, b, c = embedder.embed(
        ["How do I reset my password?", "I forgot my password, how can I change it?",
         "What are your office opening hours?"]
    )
    assert a @ b > a @ c + 0.2

"""`load_embedder` / `Embedder.embed` / `save_encoder` on a tiny random model built in the test.

No real weights here (see test_embed_minilm.py), so these run in a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from engine.bert import BertConfig, BertModel
from engine.device import Placement
from engine.embedder import (
    ENV_VAR,
    Embedder,
    default_model_dir,
    load_embedder,
    save_encoder,
)
from engine.errors import (
    CorruptModelFile,
    MissingTokenizer,
    ModelLoadError,
    ModelNotFound,
    UnsupportedArchitecture,
)

WORDS = "how do i reset my password the app crashes on login please help refund invoice".split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LETTERS = list("abcdefghijklmnopqrstuvwxyz0123456789?.,!")
CPU_FP32 = Placement(torch.device("cpu"), torch.float32)
TEXTS = [
    "How do I reset my password?",
    "the app crashes",
    "",
    "please help, refund my invoice! the app crashes on login " * 3,
    "zzz qqq",
    "How do I reset my password?",  # a duplicate keeps its own row
]


def write_tokenizer(directory: Path) -> None:
    """A BERT-style WordPiece tokenizer.json over a toy vocabulary (letters keep it total)."""
    tokens = [*SPECIALS, *WORDS, *LETTERS, *(f"##{c}" for c in LETTERS)]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tok.enable_padding(length=128)  # like MiniLM's export: the embedder must turn this off
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))


def tiny_model(vocab_size: int, seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
    )
    return BertModel(cfg).eval()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A complete, loadable model directory: config.json, model.safetensors, tokenizer.json."""
    tok_dir = tmp_path / "tok"
    write_tokenizer(tok_dir)
    vocab_size = Tokenizer.from_file(str(tok_dir / "tokenizer.json")).get_vocab_size()
    return save_encoder(tiny_model(vocab_size), tok_dir, tmp_path / "model")


def test_embed_shape_dtype_norm_and_order(model_dir: Path) -> None:
    emb = load_embedder(model_dir, placement=CPU_FP32)
    vecs = emb.embed(TEXTS, batch_size=2)
    assert emb.dim == 32
    assert vecs.shape == (len(TEXTS), 32)
    assert vecs.dtype == torch.float32 and vecs.device.type == "cpu"
    torch.testing.assert_close(vecs.norm(dim=-1), torch.ones(len(TEXTS)))
    # Sorting by length must not scramble rows: each row equals that text embedded alone.
    one_by_one = torch.cat([emb.embed([t]) for t in TEXTS])
    torch.testing.assert_close(vecs, one_by_one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vecs[0], vecs[5])


def test_batch_size_does_not_change_results(model_dir: Path) -> None:
    emb = load_embedder(model_dir, placement=CPU_FP32)
    reference = emb.embed(TEXTS, batch_size=1)
    for batch_size in (3, 64):
        torch.testing.assert_close(emb.embed(TEXTS, batch_size=batch_size), reference,
                                   atol=1e-5, rtol=1e-5)


def test_empty_input_and_bad_arguments(model_dir: Path) -> None:
    emb = load_embedder(model_dir, placement=CPU_FP32)
    assert emb.embed([]).shape == (0, 32)
    with pytest.raises(TypeError):
        emb.embed("not a list")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        emb.embed(["x"], batch_size=0)


def test_embed_leaves_training_mode_alone(model_dir: Path) -> None:
    emb = load_embedder(model_dir, placement=CPU_FP32)
    emb.model.train()
    a, b = emb.embed(TEXTS[:2]), emb.embed(TEXTS[:2])
    assert torch.equal(a, b), "embed must run in eval mode (no dropout)"
    assert emb.model.training


def test_max_length_from_sentence_bert_config_truncates(model_dir: Path) -> None:
    """The tokenizer.json pads/truncates at 128; sentence_bert_config.json's limit wins."""
    (model_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8}))
    emb = load_embedder(model_dir, placement=CPU_FP32)
    assert emb.max_length == 8
    lengths = [len(ids) for ids in emb.token_ids(["the app crashes on login " * 20, "help"])]
    assert lengths == [8, 3]  # truncated incl. [CLS]/[SEP]; no fixed padding to 128


def test_max_length_capped_by_position_table(model_dir: Path) -> None:
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    emb = load_embedder(model_dir, placement=CPU_FP32)
    assert emb.max_length == 64  # max_position_embeddings of the tiny model
    assert emb.embed(["the app crashes on login " * 40]).shape == (1, 32)


def test_save_load_round_trip_gives_identical_embeddings(model_dir: Path, tmp_path: Path) -> None:
    emb = load_embedder(model_dir, placement=CPU_FP32)
    # Stand in for fine-tuning: one optimiser step on a contrastive-style objective.
    # (A hand-written SGD step: torch.optim's first use imports torch._dynamo, ~5 s.)
    emb.model.train()
    batch = emb.tokenize(["reset my password", "how do i reset my password"])
    vecs = emb.model.encode(*batch)
    (-(vecs[0] @ vecs[1])).backward()
    with torch.no_grad():
        for param in emb.model.parameters():
            if param.grad is not None:
                param.sub_(0.1 * param.grad)
    tuned = emb.embed(TEXTS)
    assert not torch.allclose(tuned, load_embedder(model_dir, placement=CPU_FP32).embed(TEXTS))

    out = save_encoder(emb.model, model_dir, tmp_path / "tuned")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert torch.equal(load_embedder(out, placement=CPU_FP32).embed(TEXTS), tuned)


def test_low_precision_placement_still_returns_fp32_unit_vectors(model_dir: Path) -> None:
    """The CUDA path runs bf16; on CPU we can at least check the dtype handling end to end."""
    ref = load_embedder(model_dir, placement=CPU_FP32).embed(TEXTS)
    emb = load_embedder(model_dir, placement=Placement(torch.device("cpu"), torch.bfloat16))
    assert next(emb.model.parameters()).dtype == torch.bfloat16
    vecs = emb.embed(TEXTS)
    assert vecs.dtype == torch.float32
    torch.testing.assert_close(vecs.norm(dim=-1), torch.ones(len(TEXTS)))
    assert (vecs * ref).sum(-1).min() > 0.99


def test_env_var_overrides_default_path(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(model_dir))
    assert default_model_dir() == model_dir
    assert isinstance(load_embedder(placement=CPU_FP32), Embedder)


# --- error paths: each names the offending path -------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=str(tmp_path / "nope")):
        load_embedder(tmp_path / "nope")


def test_missing_tokenizer_json(model_dir: Path) -> None:
    (model_dir / "tokenizer.json").unlink()
    with pytest.raises(MissingTokenizer, match=str(model_dir / "tokenizer.json")):
        load_embedder(model_dir)


def test_unparseable_tokenizer_json(model_dir: Path) -> None:
    (model_dir / "tokenizer.json").write_text("{not json")
    with pytest.raises(MissingTokenizer, match=str(model_dir / "tokenizer.json")):
        load_embedder(model_dir)


def test_missing_safetensors(model_dir: Path) -> None:
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=str(model_dir / "model.safetensors")):
        load_embedder(model_dir)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_safetensors(model_dir: Path, damage: str) -> None:
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00" * 64)
    with pytest.raises(CorruptModelFile, match=str(weights)):
        load_embedder(model_dir)


def test_weights_that_do_not_match_config(model_dir: Path) -> None:
    cfg = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 3}))
    with pytest.raises(CorruptModelFile, match=r"model\.safetensors.*layer\.2"):
        load_embedder(model_dir)


def test_non_bert_config(model_dir: Path) -> None:
    (model_dir / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    with pytest.raises(UnsupportedArchitecture, match=str(model_dir / "config.json")):
        load_embedder(model_dir)


def test_missing_config(model_dir: Path) -> None:
    (model_dir / "config.json").unlink()
    with pytest.raises(ModelLoadError, match=str(model_dir / "config.json")):
        load_embedder(model_dir)

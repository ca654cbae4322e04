"""GGUF/HF tokenizers and chat-template rendering."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from engine.errors import MissingTokenizer
from engine.gguf_file import read_gguf
from engine.tokenizer import Tokenizer
from tests.engine.tiny_llama import CHATML, hf_config, hf_model, write_gguf


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("tok") / "t.gguf",
                      hf_model(hf_config(vocab_size=280, tie_word_embeddings=True)))


def gguf_tokenizer(path: Path) -> Tokenizer:
    return Tokenizer.from_gguf_metadata(read_gguf(path).metadata, str(path))


def test_gguf_bpe_merges_special_tokens_and_ids(tiny_gguf: Path) -> None:
    tok = gguf_tokenizer(tiny_gguf)
    assert tok.bos_token_id == 1 and tok.eos_token_ids == (2,)
    ids = tok.encode("<|im_start|>the thin<|im_end|>")
    pieces = [tok.id_to_token(i) for i in ids]
    # control tokens stay whole; merges apply in rank order ("Ġ t" before "i n")
    assert pieces == ["<|im_start|>", "t", "he", "Ġt", "h", "in", "<|im_end|>"]
    assert [tok.id_to_token(i) for i in tok.encode(" the")] == ["Ġthe"]
    assert tok.decode(ids) == "the thin"
    assert tok.decode(ids, skip_special_tokens=False) == "<|im_start|>the thin<|im_end|>"
    assert tok.decode(tok.encode("naïve ☕ 12")) == "naïve ☕ 12"


@pytest.mark.parametrize("pre,text,expected", [
    ("smollm", "a 12", ["a", "Ġ", "1", "2"]),  # digits split one by one
    ("default", "a 12", ["a", "Ġ", "1", "2"]),
    ("llama-bpe", "abc\n\n", ["a", "b", "c", "Ċ", "Ċ"]),
    ("qwen2", "x 7", ["x", "Ġ", "7"]),
])
def test_pre_tokenizer_named_by_gguf(tmp_path: Path, pre: str, text: str,
                                     expected: list[str]) -> None:
    path = write_gguf(tmp_path / "t.gguf", hf_model(hf_config(vocab_size=280)), pre=pre)
    tok = gguf_tokenizer(path)
    assert [tok.id_to_token(i) for i in tok.encode(text)] == expected


def test_sentencepiece_gguf_is_reported_not_guessed(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "t.gguf", hf_model(hf_config(vocab_size=280)))
    meta = dict(read_gguf(path).metadata)
    meta["tokenizer.ggml.model"] = "llama"
    with pytest.raises(MissingTokenizer, match="not supported"):
        Tokenizer.from_gguf_metadata(meta, str(path))


def test_chat_template_renders_like_transformers(tiny_gguf: Path) -> None:
    tok = gguf_tokenizer(tiny_gguf)
    messages = [{"role": "user", "content": "hi"}]
    assert tok.render_chat(messages) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.chat_prompt(messages) == tok.encode(tok.render_chat(messages))


def test_template_helpers_and_sandbox(tiny_gguf: Path) -> None:
    tok = gguf_tokenizer(tiny_gguf)
    tok.chat_template = ("{{ bos_token }}{{ strftime_now('%Y') | length }}{% generation %}"
                         "{{ messages[0]['content'] | tojson }}{% endgeneration %}"
                         "{% if messages | length > 1 %}{{ raise_exception('one only') }}"
                         "{% endif %}")
    assert tok.render_chat([{"role": "user", "content": "é"}]) == '<|im_start|>4"é"'
    with pytest.raises(jinja2.TemplateError, match="one only"):
        tok.render_chat([{"role": "user", "content": "a"}] * 2)
    tok.chat_template = "{{ messages.append(1) }}"  # templates cannot mutate their inputs
    with pytest.raises(jinja2.exceptions.SecurityError):
        tok.render_chat([])


def test_tokenizer_json_directory(tmp_path: Path, tiny_gguf: Path) -> None:
    import json

    gguf_tok = gguf_tokenizer(tiny_gguf)
    gguf_tok.backend.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|im_end|>", "bos_token": "<|im_start|>", "chat_template": CHATML}))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0]}))
    tok = Tokenizer.from_hf_dir(str(tmp_path))
    assert tok.eos_token_ids == (2, 0) and tok.bos_token_id == 1
    text = "the thin <|im_end|> 42"
    assert tok.encode(text) == gguf_tok.encode(text)
    assert tok.render_chat([{"role": "user", "content": "x"}]).endswith("assistant\n")


def test_missing_tokenizer_json(tmp_path: Path) -> None:
    with pytest.raises(MissingTokenizer, match=r"tokenizer\.json") as info:
        Tokenizer.from_hf_dir(str(tmp_path))
    assert str(tmp_path) in str(info.value)

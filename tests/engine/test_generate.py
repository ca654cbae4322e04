"""Prefill + decode: batching, EOS, stop strings, logprobs, and the Generator facade."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
import torch

from engine.errors import ContextLengthExceeded
from engine.generate import TextAssembler, generate
from engine.generator import Generator, load_generator
from engine.sampling import SamplingParams
from tests.engine.tiny_llama import hf_config, hf_model, write_gguf


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Generator:
    path = write_gguf(tmp_path_factory.mktemp("gen") / "tiny.gguf",
                      hf_model(hf_config(vocab_size=280, tie_word_embeddings=True), seed=3))
    return load_generator(str(path))


PROMPTS = [[1, 50, 60, 70, 80, 90, 100], [1, 120], [1, 200, 201, 202, 203]]


def test_batched_equals_one_at_a_time(gen: Generator) -> None:
    params = SamplingParams(max_new_tokens=12, ignore_eos=True)
    batched = gen.generate(PROMPTS, params)
    single = [gen.generate([p], params)[0] for p in PROMPTS]
    assert [r.token_ids for r in batched] == [r.token_ids for r in single]
    for r in batched:
        assert len(r.token_ids) == 12 and len(r.logprobs) == 12 and r.finish_reason == "length"
    for a, b in zip(batched, single, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_logprobs_are_log_softmax_of_full_forward(gen: Generator) -> None:
    [r] = gen.generate([PROMPTS[0]], SamplingParams(max_new_tokens=6, ignore_eos=True))
    seq = torch.tensor([PROMPTS[0] + r.token_ids])
    logits = gen.model(seq, gen.model.new_cache(1, 32), [0])[0]
    start = len(PROMPTS[0]) - 1
    logp = torch.log_softmax(logits[start:start + 6], -1)
    assert r.logprobs == pytest.approx(logp[torch.arange(6), torch.tensor(r.token_ids)].tolist(),
                                       abs=1e-5)
    assert logits[start:start + 6].argmax(-1).tolist() == r.token_ids


def test_eos_stops_a_row_without_entering_text(gen: Generator) -> None:
    params = SamplingParams(max_new_tokens=10, ignore_eos=True)
    free = gen.generate(PROMPTS, params)
    eos = free[0].token_ids[3]
    saved = gen.tokenizer.eos_token_ids
    gen.tokenizer.eos_token_ids = (eos,)
    try:
        stopped = gen.generate(PROMPTS, SamplingParams(max_new_tokens=10))
    finally:
        gen.tokenizer.eos_token_ids = saved
    first = free[0].token_ids.index(eos)
    assert stopped[0].token_ids == free[0].token_ids[: first + 1]
    assert stopped[0].finish_reason == "stop"
    assert stopped[0].text == gen.tokenizer.decode(free[0].token_ids[:first])
    for got, ref in zip(stopped[1:], free[1:], strict=True):  # other rows unaffected
        n = len(got.token_ids)
        assert got.token_ids == ref.token_ids[:n]


def test_stop_string_truncates_text(gen: Generator) -> None:
    [free] = gen.generate([PROMPTS[1]], SamplingParams(max_new_tokens=12, ignore_eos=True))
    text = gen.tokenizer.decode(free.token_ids)
    stop = text[5:8]
    assert stop.strip(), text
    [r] = gen.generate([PROMPTS[1]], SamplingParams(max_new_tokens=12, stop=(stop,),
                                                    ignore_eos=True))
    assert r.finish_reason == "stop"
    assert r.text == text[: text.index(stop)]
    assert stop not in r.text


def test_seeded_sampling_reproducible(gen: Generator) -> None:
    params = SamplingParams(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=11,
                            repetition_penalty=1.2, ignore_eos=True)
    a = gen.generate(PROMPTS, params)
    b = gen.generate(PROMPTS[::-1], params)[::-1]
    assert [r.token_ids for r in a] == [r.token_ids for r in b]


def test_context_limits(gen: Generator) -> None:
    with pytest.raises(ContextLengthExceeded):
        gen.generate([[1] * gen.max_context], SamplingParams(max_new_tokens=1))
    cache = gen.model.new_cache(1, 10)
    [r] = generate(gen.model, gen.tokenizer, [[1] * 7], SamplingParams(max_new_tokens=50,
                                                                       ignore_eos=True), cache)
    assert len(r.token_ids) == 3 and r.finish_reason == "length"


def test_chat_prompt_and_zero_tokens(gen: Generator) -> None:
    ids = gen.chat_prompt([{"role": "user", "content": "the"}])
    assert gen.tokenizer.decode(ids, skip_special_tokens=False).endswith("<|im_start|>assistant\n")
    [r] = gen.generate([ids], SamplingParams(max_new_tokens=0))
    assert r.text == "" and r.token_ids == []


# -- TextAssembler with a toy tokenizer: one string per id ----------------------------------------
class ToyTokenizer:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return b"".join(self.pieces[i] for i in ids).decode("utf-8", errors="replace")


def assemble(pieces: list[bytes], stop: tuple[str, ...]) -> tuple[list[str], str, bool]:
    tok: Any = ToyTokenizer(pieces)
    asm = TextAssembler(tok, stop)
    deltas = [asm.push(i) for i in range(len(pieces))]
    deltas.append(asm.finish())
    return deltas, asm.text, asm.stopped


def test_stop_string_across_tokens_is_never_partially_emitted() -> None:
    deltas, text, stopped = assemble([b"Hello", b" wor", b"ld\nUs", b"er:", b" more"],
                                     ("\nUser:",))
    assert stopped and text == "Hello world"
    assert "".join(deltas) == "Hello world"
    assert deltas[2] == "ld"  # "\nUs" held back: it may start the stop string


def test_held_prefix_released_when_it_turns_out_not_to_stop() -> None:
    deltas, text, stopped = assemble([b"a\nU", b"nicorn"], ("\nUser:",))
    assert not stopped and text == "a\nUnicorn"
    assert deltas[0] == "a"


def test_partial_stop_text_dropped_at_the_end() -> None:
    _, text, stopped = assemble([b"ok\nUs"], ("\nUser:",))
    assert not stopped and text == "ok"


def test_multibyte_characters_wait_for_all_their_bytes() -> None:
    euro = "€".encode()
    deltas, text, _ = assemble([b"x", euro[:1], euro[1:], b"y"], ())
    assert deltas[:4] == ["x", "", "€", "y"] and text == "x€y"

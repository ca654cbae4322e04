"""The bundled SmolLM2 GGUF against transformers' own GGUF loading of the same file."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
import torch

from engine.sampling import SamplingParams

pytestmark = pytest.mark.slow

SUPPORT_QUESTIONS = [
    "How do I reset my password?",
    "My invoice shows the wrong amount, what should I do?",
    "Can I upgrade my plan in the middle of the month?",
    "The app crashes when I upload a PDF larger than 10 MB.",
    "How do I export my data to CSV?",
    "I was charged twice for order #48213. Please help!",
    "Where can I find the API key for my workspace?",
    "Is there a way to add a teammate without giving them admin rights?",
    "The Slack integration stopped posting messages yesterday.",
    "How long does a refund take to reach my bank account?",
]


def tokenizer_corpus() -> list[str]:
    pieces = [
        "Hello world", "  leading spaces", "trailing spaces   ", "tabs\tand\tmore",
        "line1\nline2\n\nline4", "\r\nwindows\r\n", "123", "3.14159", "1,000,000", "2024-06-01",
        "+1 (555) 010-9999", "v2.3.1-beta", "0x1F4A9", "def f(x):\n    return x ** 2\n",
        "for (int i = 0; i < n; ++i) { sum += a[i]; }", "SELECT * FROM users WHERE id = 42;",
        '{"key": [1, 2, 3], "ok": true}', "<div class=\"a\">hi</div>", "https://example.com/a?b=c",
        "email@example.org", "I'm sure you'll see they've done it", "CAPS LOCK IS ON",
        "naïve café résumé", "Straße", "Привет, мир", "こんにちは世界", "你好，世界！",
        "안녕하세요",
        "مرحبا بالعالم", "שלום עולם", "🙂", "👍🏽 thumbs", "🇫🇷 flag", "👨‍👩‍👧 family", "a\u200bb",
        "     ", "\n\n\n", " \n \n ", "x" * 50, "ab" * 20, "!!!???...", "#hashtag @mention",
        "<|im_start|>user\nhi<|im_end|>", "text<|endoftext|>more", "$100.00 or €85,50",
        "½ ¾ ⅓", "∑ x² ≤ ∞", "math: a_{i,j} = \\frac{1}{2}", "C:\\Users\\me\\file.txt",
        "snake_case and camelCase and kebab-case", "Mr. O'Neil's 3rd car", "e.g. i.e. etc.",
    ]
    corpus = list(pieces)
    for a, b in itertools.islice(itertools.combinations(pieces, 2), 0, None, 7):
        corpus.append(f"{a} {b}")
    corpus += [q + suffix for q in SUPPORT_QUESTIONS for suffix in ("", " 12345", "\n\n  ok")]
    return corpus


def test_tokenizer_matches_transformers_gguf_tokenizer(smollm_generator: Any,
                                                       hf_gguf_tokenizer: Any) -> None:
    """Exact match with transformers, except where llama.cpp's `smollm` pre-tokenizer (and
    SmolLM2's original tokenizer.json) splits every numeric character off first and transformers'
    GGUF conversion does not: e.g. "spaces    123" is ["ĠĠĠĠ", "1", ...] for the model,
    ["ĠĠĠ", "Ġ", "1", ...] in transformers. Those strings must match transformers' vocabulary
    and merges once its pre-tokenizer is given the same digit split."""
    from tokenizers import Regex, pre_tokenizers

    corpus = tokenizer_corpus()
    ours = smollm_generator.tokenizer
    digit_split = copy.deepcopy(hf_gguf_tokenizer.backend_tokenizer)
    digit_split.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
        hf_gguf_tokenizer.backend_tokenizer.pre_tokenizer,
    ])
    exact, digit_rule, wrong = 0, [], []
    for text in corpus:
        ids = ours.encode(text)
        if ids == hf_gguf_tokenizer(text, add_special_tokens=False)["input_ids"]:
            exact += 1
        elif ids == digit_split.encode(text, add_special_tokens=False).ids:
            digit_rule.append(text)
        else:
            wrong.append(text)
    assert wrong == []
    assert exact >= 200, (exact, digit_rule)
    assert all(any(c.isnumeric() for c in text) for text in digit_rule)
    for text in corpus[:60]:  # and back
        ids = ours.encode(text)
        assert ours.decode(ids, skip_special_tokens=False) == hf_gguf_tokenizer.decode(ids)


def test_chat_prompt_matches_transformers_template(smollm_generator: Any,
                                                   hf_gguf_tokenizer: Any) -> None:
    messages = [{"role": "system", "content": "You are a support agent for Acme."},
                {"role": "user", "content": SUPPORT_QUESTIONS[0]}]
    expected = hf_gguf_tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                     tokenize=True)
    if isinstance(expected, dict) or hasattr(expected, "input_ids"):
        expected = expected["input_ids"]
    assert smollm_generator.chat_prompt(messages) == list(expected)


def test_prompt_logits_match_transformers(smollm_generator: Any, hf_gguf_model: Any) -> None:
    gen = smollm_generator
    prompts = [gen.chat_prompt([{"role": "user", "content": q}]) for q in SUPPORT_QUESTIONS[:3]]
    for ids in prompts:
        x = torch.tensor([ids])
        with torch.no_grad():
            expected = hf_gguf_model(x).logits.float()
        got = gen.model(x, gen.model.new_cache(1, len(ids)), [0]).float()
        assert (got - expected).abs().max().item() <= 1e-3


def test_greedy_generation_matches_transformers(smollm_generator: Any,
                                                hf_gguf_model: Any) -> None:
    """32 greedy tokens per prompt, ours batched. transformers checks them by teacher forcing:
    its argmax after every prefix of our output must be our next token, which is exactly the
    condition for its greedy decode to produce the same 32 tokens (one forward instead of 32)."""
    gen = smollm_generator
    prompts = [gen.chat_prompt([{"role": "user", "content": q}]) for q in SUPPORT_QUESTIONS]
    ours = gen.generate(prompts, SamplingParams(max_new_tokens=32, ignore_eos=True))
    assert all(r.finish_reason == "length" and len(r.token_ids) == 32 for r in ours)

    seqs = [p + r.token_ids for p, r in zip(prompts, ours, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    with torch.no_grad():
        logits = hf_gguf_model(input_ids=ids, attention_mask=mask).logits.float()
    same = 0
    for b, (p, r) in enumerate(zip(prompts, ours, strict=True)):
        at = torch.arange(len(p) - 1, len(p) + 31)
        same += logits[b, at].argmax(-1).tolist() == r.token_ids
        # logprobs are the model's log-softmax at each chosen token
        logp = torch.log_softmax(logits[b, at], -1)
        expected = logp[torch.arange(32), torch.tensor(r.token_ids)].tolist()
        assert r.logprobs == pytest.approx(expected, abs=2e-3)
    assert same >= 9, [r.text for r in ours]

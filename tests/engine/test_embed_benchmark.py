"""The embeddings benchmark's inputs are honest: distinct sentences, correct padding arithmetic."""

from __future__ import annotations

from benchmarks.embeddings import make_sentences, padded_tokens


def test_sentences_are_distinct_and_deterministic() -> None:
    sentences = make_sentences(1000)
    assert len(set(sentences)) == 1000
    assert sentences == make_sentences(1000)


def test_padded_tokens_counts_each_batch_at_its_longest() -> None:
    assert padded_tokens([3, 5, 2, 2, 7], batch_size=2) == 2 * 5 + 2 * 2 + 1 * 7
    assert padded_tokens([], batch_size=4) == 0

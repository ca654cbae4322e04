"""Faithfulness guard: is each generated sentence supported by the cited article?

A sentence is supported when most of its content words (stemmed, stopwords dropped) occur in
the article, and every number, amount, URL or code in it occurs there verbatim: a small model
inventing "within 24 hours" where the article says "5 minutes" is exactly what must never
reach a customer. Optionally, an embedder may vouch for a paraphrase whose word overlap is
lower but whose meaning is close to one article sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.bm25 import tokenize
from bot.ports import Embedder

MIN_WORD_SUPPORT = 0.7  # share of a sentence's content words found in the article
PARAPHRASE_WORD_SUPPORT = 0.4  # lower bar when the embedding says it is a paraphrase
PARAPHRASE_COSINE = 0.8

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Numbers (with separators, units and currency), URLs, e-mail addresses and code-like tokens.
_FACT = re.compile(r"https?://\S+|\S+@\S+\.\w+|[$€£]?\d[\d.,:/%-]*\w*|\b[A-Z]{2,}[-_]?\d+\b")
# Formatting that carries no claim: list bullets, headings, emphasis.
_MARKUP = re.compile(r"^[\s>*#\-•\d.)]+|[*_`]+")


@dataclass(frozen=True)
class SentenceCheck:
    sentence: str
    word_support: float
    missing_facts: tuple[str, ...]
    supported: bool


@dataclass(frozen=True)
class FaithfulnessReport:
    checks: tuple[SentenceCheck, ...]

    @property
    def supported(self) -> bool:
        return all(c.supported for c in self.checks) and bool(self.checks)

    @property
    def unsupported(self) -> list[str]:
        return [c.sentence for c in self.checks if not c.supported]


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _facts(text: str) -> set[str]:
    return {m.group(0).rstrip(".,;:!?)").lower() for m in _FACT.finditer(text)}


class FaithfulnessGuard:
    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder

    def check(self, generated: str, sources: Sequence[str]) -> FaithfulnessReport:
        """Check every sentence of `generated` against the source texts (cited article)."""
        source_text = "\n".join(sources)
        source_words = set(tokenize(source_text))
        source_facts = _facts(source_text)
        source_lower = source_text.lower()
        checks: list[SentenceCheck] = []
        pending: list[int] = []  # sentences that only a paraphrase check could still pass
        for sentence in split_sentences(generated):
            words = tokenize(_MARKUP.sub(" ", sentence))
            missing = tuple(sorted(f for f in _facts(sentence)
                                   if f not in source_facts and f not in source_lower))
            if not words:  # "Sure!" or a bare list marker: nothing claimed
                checks.append(SentenceCheck(sentence, 1.0, missing, not missing))
                continue
            support = sum(w in source_words for w in words) / len(words)
            ok = support >= MIN_WORD_SUPPORT and not missing
            checks.append(SentenceCheck(sentence, support, missing, ok))
            if not ok and not missing and support >= PARAPHRASE_WORD_SUPPORT:
                pending.append(len(checks) - 1)
        if pending and self.embedder is not None:
            checks = self._paraphrases(checks, pending, source_text)
        return FaithfulnessReport(tuple(checks))

    def _paraphrases(self, checks: list[SentenceCheck], pending: list[int],
                     source_text: str) -> list[SentenceCheck]:
        assert self.embedder is not None
        source_sentences = split_sentences(source_text)
        if not source_sentences:
            return checks
        texts = [checks[i].sentence for i in pending] + source_sentences
        vecs = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        sims = vecs[: len(pending)] @ vecs[len(pending):].T
        for row, i in enumerate(pending):
            if float(sims[row].max()) >= PARAPHRASE_COSINE:
                c = checks[i]
                checks[i] = SentenceCheck(c.sentence, c.word_support, c.missing_facts, True)
        return checks

"""Okapi BM25 over short fields (an article's title+body and each example question).

An article's score is the best of its fields, and `coverage` says how much of the query's
information (IDF mass) the best field contains — a 0..1 figure a threshold can use, which raw
BM25 scores are not.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOPWORDS = frozenset(
    "a also an and are as at be been but by can could did do does for from had has have hello "
    "hey hi how i i'm if in into is it it's its me my of on or our so that the their them then "
    "there these they please thanks thank this to was we were what when where which who why "
    "will with would you your yours".split()
)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without stopwords, with a light plural/-ing stemmer."""
    out = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS:
            continue
        out.append(_stem(word))
    return out


def _stem(word: str) -> str:
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + keep
    return word


@dataclass(frozen=True)
class Hit:
    doc: int  # index of the document (article) the caller passed in
    score: float
    coverage: float


class BM25Index:
    def __init__(self, docs: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75) -> None:
        """docs[i] is the list of text fields of document i."""
        self.k1, self.b = k1, b
        self._fields: list[tuple[int, Counter[str], int]] = []
        for doc_id, fields in enumerate(docs):
            for text in fields:
                toks = tokenize(text)
                if toks:
                    self._fields.append((doc_id, Counter(toks), len(toks)))
        n = max(1, len(self._fields))
        self._avg_len = sum(length for _, _, length in self._fields) / n
        df: Counter[str] = Counter()
        for _, counts, _ in self._fields:
            df.update(counts.keys())
        self._idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        self._unseen_idf = math.log(1 + (n + 0.5) / 0.5)
        self._postings: dict[str, list[int]] = {}
        for i, (_, counts, _) in enumerate(self._fields):
            for t in counts:
                self._postings.setdefault(t, []).append(i)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms:
            return []
        total_idf = sum(self._idf.get(t, self._unseen_idf) for t in terms)
        best: dict[int, Hit] = {}
        candidates = {i for t in terms for i in self._postings.get(t, [])}
        for i in candidates:
            doc_id, counts, length = self._fields[i]
            score, matched = 0.0, 0.0
            for t in terms:
                tf = counts.get(t, 0)
                if not tf:
                    continue
                idf = self._idf[t]
                matched += idf
                norm = tf + self.k1 * (1 - self.b + self.b * length / self._avg_len)
                score += idf * tf * (self.k1 + 1) / norm
            hit = Hit(doc_id, score, matched / total_idf)
            if doc_id not in best or hit.score > best[doc_id].score:
                best[doc_id] = hit
        return sorted(best.values(), key=lambda h: h.score, reverse=True)[:k]

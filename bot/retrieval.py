"""Hybrid retrieval: dense kNN over example questions and passages + BM25 over passages,
fused into one calibrated 0..1 score per article.

Per (query, article) three signals:

- `best`: the highest cosine similarity between the query and any of the article's entries;
- `votes`: the article's share of a similarity-weighted vote among the query's k nearest
  entries (kNN voting over example questions is what makes a KB with many phrasings per
  article accurate: one odd near-duplicate cannot outvote ten good neighbours);
- `lexical`: the share of the query's IDF mass found in the article's best passage (BM25
  coverage), which catches product names and error codes an encoder blurs.

A logistic model turns them into P(this article answers the query). It is fitted on the
knowledge base itself: each example question (up to `CALIBRATION_SAMPLE` of them) is asked
with its own entry left out (its article is then usually right: positive, other candidates:
negative) and again with its whole article left out (every candidate is wrong, like a question
the KB cannot answer). Without enough example questions, fixed weights are used instead.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bot.bm25 import tokenize
from bot.kb_index import IndexStorage, KbIndex, build_index
from bot.knowledge import Article, KnowledgeBase
from bot.ports import Embedder

KNN = 10  # nearest entries that vote
VOTE_TEMPERATURE = 0.05  # exp(sim / T) vote weights: the nearest neighbours count most
CANDIDATES = 5  # articles scored per query
CALIBRATION_SAMPLE = 2000  # example questions used to fit the calibration
MIN_CALIBRATION_QUESTIONS = 20
# Fallback weights (best, votes, lexical, bias), used when the KB has too few questions.
DEFAULT_WEIGHTS = (12.0, 3.0, 2.0, -10.5)


@dataclass(frozen=True)
class ArticleHit:
    article: Article
    confidence: float  # calibrated probability that this article answers the query
    best: float
    votes: float
    lexical: float


@dataclass(frozen=True)
class Calibration:
    weights: tuple[float, float, float, float]  # best, votes, lexical, bias
    fitted_on: int  # examples used (0: fixed fallback weights)

    def score(self, features: np.ndarray) -> np.ndarray:
        """features [..., 3] -> probabilities [...]."""
        w = np.asarray(self.weights[:3], dtype=np.float64)
        z = features.astype(np.float64) @ w + self.weights[3]
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2,
                 iterations: int = 25) -> tuple[float, ...]:
    """L2-regularised logistic regression by Newton's method; returns (w..., bias)."""
    xb = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    reg = l2 * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -40, 40)))
        grad = xb.T @ (p - y) + reg @ w
        hess = (xb.T * (p * (1 - p))) @ xb + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-6:
            break
    return tuple(float(v) for v in w)


class LexicalCoverage:
    """BM25's coverage figure per article: the share of the query's IDF mass found in the
    article's best field (an example question or a passage). A field can be excluded, so the
    calibration can ask a question without it finding itself.

    Vectorised with postings: a query adds each of its terms' IDF to the fields holding the
    term, then a per-article max runs over the fields in one reduceat (thousands of queries
    a second, where a Python loop over fields managed about a hundred).
    """

    def __init__(self, texts: Sequence[str], owners: np.ndarray, n_articles: int) -> None:
        fields = [set(tokenize(t)) for t in texts]
        self.n_fields = len(fields)
        self.n_articles = n_articles
        postings: dict[str, list[int]] = {}
        for i, toks in enumerate(fields):
            for t in toks:
                postings.setdefault(t, []).append(i)
        n = max(1, len(fields))
        self.idf = {t: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5))
                    for t, p in postings.items()}
        self.unseen_idf = math.log(1 + (n + 0.5) / 0.5)
        # Fields are renumbered so each article's fields are contiguous (for reduceat).
        self.order = np.argsort(owners, kind="stable")
        rank = np.empty_like(self.order)
        rank[self.order] = np.arange(len(self.order))
        self.postings = {t: rank[np.array(p, dtype=np.int64)] for t, p in postings.items()}
        grouped = owners[self.order]
        self.starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) \
            if len(grouped) else np.zeros(0, np.int64)
        self.start_articles = grouped[self.starts] if len(grouped) else grouped
        self.rank = rank

    def matrix(self, queries: Sequence[str], exclude: Sequence[int] | None = None,
               ) -> np.ndarray:
        """Coverage [Q, A] of every article for each query (excluding field exclude[q])."""
        out = np.zeros((len(queries), self.n_articles), dtype=np.float32)
        if not self.n_fields:
            return out
        for start in range(0, len(queries), 256):
            block = queries[start:start + 256]
            found = np.zeros((len(block), self.n_fields), dtype=np.float32)
            totals = np.zeros(len(block), dtype=np.float32)
            for qi, query in enumerate(block):
                for term in set(tokenize(query)):
                    weight = self.idf.get(term, self.unseen_idf)
                    totals[qi] += weight
                    rows = self.postings.get(term)
                    if rows is not None:
                        found[qi, rows] += weight
                if exclude is not None and exclude[start + qi] >= 0:
                    found[qi, self.rank[exclude[start + qi]]] = 0.0
            best = np.maximum.reduceat(found, self.starts, axis=1)
            out[start:start + len(block), self.start_articles] = \
                best / np.maximum(totals, 1e-9)[:, None]
        return out

    def coverage(self, query: str, article: int, exclude: int = -1) -> float:
        return float(self.matrix([query], [exclude])[0, article])


class HybridRetriever:
    def __init__(self, kb: KnowledgeBase, index: KbIndex, embedder: Embedder,
                 calibrate: bool = True) -> None:
        self.articles = list(kb.articles)
        self.embedder = embedder
        position = {a.id: i for i, a in enumerate(self.articles)}
        missing = [a.id for a in self.articles if a.id not in index.hashes]
        if missing:
            raise ValueError(f"index is out of date: {len(missing)} article(s) not indexed "
                             f"(e.g. {missing[0]!r}); run `supportbot kb index`")
        keep = [i for i, e in enumerate(index.entries) if e.article_id in position]
        self.entry_article = np.array([position[index.entries[i].article_id] for i in keep],
                                      dtype=np.int64)
        self.entry_is_question = np.array([index.entries[i].kind == "question" for i in keep])
        self.entry_text = [index.entries[i].text for i in keep]
        self.vectors = np.ascontiguousarray(index.vectors[keep], dtype=np.float32)
        # Entries grouped by article, so a per-article max is one reduceat over columns.
        self._order = np.argsort(self.entry_article, kind="stable")
        grouped = self.entry_article[self._order]
        self._starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) \
            if len(grouped) else np.zeros(0, np.int64)
        self._start_articles = grouped[self._starts] if len(grouped) else grouped
        self._lexical = LexicalCoverage(self.entry_text, self.entry_article, len(self.articles))
        self.calibration = (self._fit_calibration() if calibrate
                            else Calibration(DEFAULT_WEIGHTS, 0))

    # -- scoring ---------------------------------------------------------------------------

    def _dense(self, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """sims [Q, E] -> (best [Q, A], votes [Q, A]) per article."""
        n_q, n_a = sims.shape[0], len(self.articles)
        best = np.full((n_q, n_a), -1.0, dtype=np.float32)
        if sims.shape[1]:
            best[:, self._start_articles] = np.maximum.reduceat(sims[:, self._order],
                                                                self._starts, axis=1)
        k = min(k, sims.shape[1])
        votes = np.zeros((n_q, n_a), dtype=np.float64)
        if k == 0:
            return best, votes
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1).astype(np.float64)
        weights = np.exp((top_sims - top_sims.max(axis=1, keepdims=True)) / VOTE_TEMPERATURE)
        np.add.at(votes, (np.repeat(np.arange(n_q), k), self.entry_article[top].ravel()),
                  weights.ravel())
        votes /= votes.sum(axis=1, keepdims=True)
        return best, votes

    def _candidates(self, queries: Sequence[str], sims: np.ndarray, k: int,
                    exclude: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(article columns [Q, C], features [Q, C, 3]) of the top-C articles by dense score."""
        best, votes = self._dense(sims, KNN)
        dense_rank = best + votes
        c = min(k, len(self.articles))
        cols = np.argsort(-dense_rank, axis=1)[:, :c]
        lexical = np.take_along_axis(self._lexical.matrix(queries, exclude), cols, 1)
        feats = np.stack([np.take_along_axis(best, cols, 1), np.take_along_axis(votes, cols, 1),
                          lexical], axis=-1)
        return cols, feats

    def search_vectors(self, queries: Sequence[str], query_vectors: np.ndarray,
                       k: int = CANDIDATES) -> list[list[ArticleHit]]:
        """Ranked hits per query, given the queries' embeddings (batch path: eval)."""
        if not self.articles or not len(queries):
            return [[] for _ in queries]
        sims = np.asarray(query_vectors, dtype=np.float32) @ self.vectors.T
        cols, feats = self._candidates(queries, sims, max(k, CANDIDATES))
        probs = self.calibration.score(feats)
        results: list[list[ArticleHit]] = []
        for qi in range(len(queries)):
            order = np.argsort(-probs[qi])[:k]
            results.append([ArticleHit(self.articles[int(cols[qi, j])], float(probs[qi, j]),
                                       float(feats[qi, j, 0]), float(feats[qi, j, 1]),
                                       float(feats[qi, j, 2])) for j in order])
        return results

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)

    def search_many(self, queries: Sequence[str], k: int = CANDIDATES) -> list[list[ArticleHit]]:
        return self.search_vectors(queries, self.embed(queries), k)

    async def search(self, query: str, k: int = CANDIDATES) -> list[ArticleHit]:
        """The bot's path: encoder and scoring run in a worker thread, off the event loop."""
        hits = await asyncio.to_thread(self.search_many, [query], k)
        return hits[0]

    # -- calibration -----------------------------------------------------------------------

    def _fit_calibration(self, seed: int = 0) -> Calibration:
        questions = np.flatnonzero(self.entry_is_question)
        if len(questions) < MIN_CALIBRATION_QUESTIONS or len(self.articles) < 2:
            return Calibration(DEFAULT_WEIGHTS, 0)
        rng = random.Random(seed)
        sample = np.array(sorted(rng.sample(list(questions),
                                            min(CALIBRATION_SAMPLE, len(questions)))))
        xs, ys = [], []
        for start in range(0, len(sample), 512):
            rows = sample[start:start + 512]
            sims = self.vectors[rows] @ self.vectors.T
            texts = [self.entry_text[r] for r in rows]
            own = self.entry_article[rows]
            # Leave one out: the question cannot find itself.
            loo = sims.copy()
            loo[np.arange(len(rows)), rows] = -1.0
            cols, feats = self._candidates(texts, loo, CANDIDATES, exclude=list(rows))
            xs.append(feats.reshape(-1, 3))
            ys.append((cols == own[:, None]).ravel().astype(np.float64))
            # Leave the article out: every candidate is wrong, as for an unanswerable query.
            lao = np.where(self.entry_article[None, :] == own[:, None], -1.0, sims)
            cols, feats = self._candidates(texts, lao.astype(np.float32), 1)
            xs.append(feats.reshape(-1, 3))
            ys.append(np.zeros(len(rows)))
        x, y = np.concatenate(xs), np.concatenate(ys)
        if y.min() == y.max():
            return Calibration(DEFAULT_WEIGHTS, 0)
        w = fit_logistic(x, y)
        return Calibration((w[0], w[1], w[2], w[3]), len(x))


class Searcher(Protocol):
    async def search(self, query: str, k: int = CANDIDATES) -> list[ArticleHit]: ...


class LazyRetriever:
    """Loads the encoder and brings the stored index up to date on first use, off the event
    loop, so a bot starts at once and only changed articles are ever re-embedded."""

    def __init__(self, kb: KnowledgeBase, load_embedder: Callable[[], Embedder],
                 storage: IndexStorage) -> None:
        self.kb = kb
        self._load_embedder = load_embedder
        self.storage = storage
        self._retriever: HybridRetriever | None = None
        self._lock = asyncio.Lock()

    async def ready(self) -> HybridRetriever:
        async with self._lock:
            if self._retriever is None:
                embedder = await asyncio.to_thread(self._load_embedder)
                previous = await self.storage.load()
                update = await asyncio.to_thread(build_index, self.kb, embedder, previous)
                if update.embedded or update.removed or previous is None:
                    await self.storage.save(update)
                self._retriever = await asyncio.to_thread(HybridRetriever, self.kb,
                                                          update.index, embedder)
            return self._retriever

    async def search(self, query: str, k: int = CANDIDATES) -> list[ArticleHit]:
        return await (await self.ready()).search(query, k)

"""Hybrid retrieval on the sample KB (examples/kb) with the real packaged MiniLM encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.kb_import import load_knowledge
from bot.kb_index import build_index
from bot.knowledge import KnowledgeBase
from bot.policy import Reason, decide
from bot.retrieval import HybridRetriever, LexicalCoverage, fit_logistic

KB_DIR = Path(__file__).resolve().parent.parent / "examples" / "kb"


@pytest.fixture(scope="session")
def sample_kb() -> KnowledgeBase:
    return load_knowledge(KB_DIR)


@pytest.fixture(scope="session")
def minilm() -> Any:
    from engine.embedder import load_embedder

    return load_embedder()


@pytest.fixture(scope="session")
def retriever(sample_kb: KnowledgeBase, minilm: Any) -> HybridRetriever:
    return HybridRetriever(sample_kb, build_index(sample_kb, minilm).index, minilm)


# Paraphrases that share few words with the article's own example questions.
PARAPHRASES = [
    ("I can't remember my login password", "reset-password"),
    ("bill my customer automatically each month", "recurring-invoices"),
    ("what does the business tier cost per month", "plans-pricing"),
    ("my phone with the authenticator app was stolen", "lost-2fa-device"),
    ("download everything in my account as a CSV file", "export-data"),
    ("the credit card you charge has expired", "update-card"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("query", "expected"), PARAPHRASES)
def test_paraphrases_find_their_article_confidently(retriever: HybridRetriever, query: str,
                                                   expected: str) -> None:
    hits = retriever.search_many([query])[0]
    assert hits[0].article.id == expected, [(h.article.id, h.confidence) for h in hits]
    assert hits[0].confidence > hits[1].confidence
    assert 0.0 <= hits[-1].confidence <= hits[0].confidence <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("query", ["what is the meaning of life",
                                   "can you explain quantum tunnelling",
                                   "recommend a good pizza place in Rome"])
def test_out_of_scope_questions_get_low_confidence(retriever: HybridRetriever,
                                                   query: str) -> None:
    hits = retriever.search_many([query])[0]
    assert hits[0].confidence < 0.2
    assert decide(hits, 0.5).reason == Reason.LOW_CONFIDENCE


@pytest.mark.slow
def test_calibration_is_fitted_on_the_kb_and_rewards_each_signal(
        retriever: HybridRetriever) -> None:
    cal = retriever.calibration
    assert cal.fitted_on > 100  # LOO + leave-article-out rows from the KB's own questions
    assert all(w > 0 for w in cal.weights[:3])  # more similarity, votes, overlap: more likely
    low, high = cal.score(np.array([[0.3, 0.2, 0.0], [0.9, 1.0, 0.8]]))
    assert low < 0.2 < 0.8 < high


@pytest.mark.slow
async def test_async_search_matches_batch_search(retriever: HybridRetriever) -> None:
    query = "how do I turn on two-factor authentication"
    hits = await retriever.search(query)
    batch = retriever.search_many([query])[0]
    assert [h.article.id for h in hits] == [h.article.id for h in batch]
    assert hits[0].article.id == "two-factor"


def test_lexical_coverage_excludes_a_field() -> None:
    owners = np.array([0, 0, 1])
    lex = LexicalCoverage(["reset password link", "forgot password", "export csv data"],
                          owners, 2)
    assert lex.coverage("forgot password", 0) == pytest.approx(1.0)
    # Without its own field, "forgot" is missing: only the IDF share of "password" remains.
    partial = lex.coverage("forgot password", 0, exclude=1)
    assert 0.0 < partial < 1.0
    assert lex.coverage("forgot password", 1) == 0.0
    assert lex.coverage("the of and", 0) == 0.0  # stopwords only: no evidence


def test_fit_logistic_recovers_a_separating_direction() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(400, 2))
    y = (x[:, 0] > 0.5).astype(np.float64)  # only the first feature matters
    w = fit_logistic(x, y)
    assert w[0] > 5 and abs(w[1]) < 1.5 and w[2] < 0

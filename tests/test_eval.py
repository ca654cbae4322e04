"""Eval metrics on a small synthetic set, checked by hand; the sweep; the eval file reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.eval import (
    EvalItem,
    Prediction,
    best_threshold,
    load_eval_file,
    metrics_at,
    plot_sweep,
    predict,
    sweep,
)
from bot.knowledge import Article
from bot.policy import Reason
from bot.retrieval import ArticleHit

# 6 in-scope items, 2 out-of-scope (expected None).
ITEMS = [EvalItem(t, e, i) for i, (t, e) in enumerate([
    ("q1", "a"), ("q2", "a"), ("q3", "b"), ("q4", "b"), ("q5", "c"), ("q6", "c"),
    ("q7", None), ("q8", None)], start=1)]
PREDS = [
    Prediction("a", 0.9),  # right, confident
    Prediction("b", 0.8),  # wrong, confident
    Prediction("b", 0.6),  # right
    Prediction("b", 0.3),  # right, unsure
    Prediction("a", 0.2),  # wrong, unsure
    Prediction("c", 0.95, forced_reason=Reason.ASKED_FOR_HUMAN),  # escalated by a pre-check
    Prediction("a", 0.7),  # out of scope, answered: wrong
    Prediction("b", 0.1),  # out of scope, unsure
]


def test_metrics_at_a_threshold_by_hand() -> None:
    m = metrics_at(ITEMS, PREDS, 0.5)
    # answered (conf >= 0.5, not forced): q1 q2 q3 q7 -> 4 of 8
    assert m.coverage == pytest.approx(4 / 8)
    # in scope answered with the expected article: q1, q3 -> 2 of 6
    assert m.in_scope_accuracy == pytest.approx(2 / 6)
    # top-1 right whatever the threshold: q1 q3 q4 q6 -> 4 of 6
    assert m.top1_accuracy == pytest.approx(4 / 6)
    # out of scope escalated: q8 -> 1 of 2
    assert m.oos_recall == pytest.approx(1 / 2)
    # answered wrongly: q2 (wrong article), q7 (should have escalated) -> 2 of 8
    assert m.wrong_answer_rate == pytest.approx(2 / 8)
    assert m.escalation_rate == pytest.approx(4 / 8)
    assert (m.items, m.in_scope, m.out_of_scope, m.threshold) == (8, 6, 2, 0.5)


def test_threshold_zero_answers_all_but_forced_items() -> None:
    m = metrics_at(ITEMS, PREDS, 0.0)
    assert m.coverage == pytest.approx(7 / 8)  # only the pre-check escalates
    assert m.in_scope_accuracy == pytest.approx(3 / 6)  # q1 q3 q4
    assert m.oos_recall == 0.0
    assert m.wrong_answer_rate == pytest.approx(4 / 8)  # q2 q5 q7 q8


def test_sweep_and_best_threshold(tmp_path: Path) -> None:
    points = sweep(ITEMS, PREDS)
    thresholds = [p.threshold for p in points]
    assert thresholds == sorted(thresholds) and thresholds[0] == 0.0
    assert len(thresholds) == 8  # 0 plus the 7 distinct confidences of unforced items
    coverages = [p.coverage for p in points]
    assert coverages == sorted(coverages, reverse=True)
    chosen = best_threshold(points, max_wrong_rate=0.0)
    assert chosen is not None and chosen.threshold == pytest.approx(0.9)  # only q1 answered
    assert chosen.wrong_answer_rate == 0.0 and chosen.coverage == pytest.approx(1 / 8)
    # At 0.3, q1 q2 q3 q4 q7 are answered and q2, q7 are wrong: 2/8; at 0.2 q5 adds a third.
    loose = best_threshold(points, max_wrong_rate=0.25)
    assert loose is not None and loose.threshold == pytest.approx(0.3)
    assert loose.coverage == pytest.approx(5 / 8)
    assert best_threshold(points, max_wrong_rate=-1.0) is None
    png = plot_sweep(points, chosen, tmp_path / "sweep.png", 0.0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_uses_the_bots_pre_checks_and_article_escalation() -> None:
    items = [EvalItem("how do I reset my password", "a", 1),
             EvalItem("let me talk to a human", "a", 2),
             EvalItem("legal question", "b", 3)]
    a = Article(id="a", title="A", body="x")
    b = Article(id="b", title="B", body="y", escalate="always")
    hits = [[ArticleHit(a, 0.9, 0.9, 1, 1)], [ArticleHit(a, 0.9, 0.9, 1, 1)],
            [ArticleHit(b, 0.9, 0.9, 1, 1)]]
    preds = predict(items, hits)
    assert preds[1].forced_reason == Reason.ASKED_FOR_HUMAN
    assert preds[2].escalate_always
    m = metrics_at(items, preds, 0.5)
    assert m.in_scope_accuracy == pytest.approx(1 / 3) and m.coverage == pytest.approx(1 / 3)


def test_eval_file_reports_bad_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text('{"text": "where is my card", "expected": "card_arrival"}\n'
                    '{"text": "weather?", "expected": null}\n'
                    "not json\n"
                    '{"text": "", "expected": "x"}\n'
                    '{"text": "ok", "expected": 3}\n'
                    "\n"
                    '{"text": "last", "expected": "x"}\n', encoding="utf-8")
    items, problems = load_eval_file(path)
    assert [(i.text, i.expected, i.line) for i in items] == [
        ("where is my card", "card_arrival", 1), ("weather?", None, 2), ("last", "x", 7)]
    assert [p.line for p in problems] == [3, 4, 5]

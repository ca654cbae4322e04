"""Offline evaluation of answer-or-escalate on a labelled JSONL file.

Each line is {"text": ..., "expected": article id | null}; null means the right action is to
hand the customer to a person. The decision per item is the bot's own: policy pre-checks,
hybrid retrieval, then `policy.decide` with the threshold. No generation runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bot.kb_import import JsonLineError, iter_jsonl
from bot.knowledge import KbProblem
from bot.policy import Decision, decide, precheck
from bot.retrieval import ArticleHit


@dataclass(frozen=True)
class EvalItem:
    text: str
    expected: str | None
    line: int


def load_eval_file(path: str | Path) -> tuple[list[EvalItem], list[KbProblem]]:
    """Items of a JSONL eval file; bad lines are reported (file:line) and skipped."""
    items: list[EvalItem] = []
    problems: list[KbProblem] = []
    text = Path(path).read_text(encoding="utf-8")
    for number, obj in iter_jsonl(text):
        if isinstance(obj, JsonLineError):
            problems.append(KbProblem(str(path), number, str(obj)))
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) \
                or not obj["text"].strip():
            problems.append(KbProblem(str(path), number, "need an object with a non-empty "
                                                         "\"text\" string"))
            continue
        expected = obj.get("expected")
        if expected is not None and not isinstance(expected, str):
            problems.append(KbProblem(str(path), number, "\"expected\" must be an article id "
                                                         "string or null"))
            continue
        items.append(EvalItem(obj["text"], expected or None, number))
    return items, problems


@dataclass(frozen=True)
class Prediction:
    """The bot's view of one item before the threshold: top article and its confidence,
    or an escalation forced by a pre-check (reason)."""

    article_id: str | None
    confidence: float
    forced_reason: str | None = None
    escalate_always: bool = False


def predict(items: Sequence[EvalItem], hits: Sequence[Sequence[ArticleHit]],
            ) -> list[Prediction]:
    out: list[Prediction] = []
    for item, item_hits in zip(items, hits, strict=True):
        pre = precheck(item.text)
        top = item_hits[0] if item_hits else None
        out.append(Prediction(
            top.article.id if top is not None else None,
            top.confidence if top is not None else 0.0,
            pre.reason if pre is not None else None,
            top is not None and top.article.escalate == "always"))
    return out


def decision_for(pre_reason: str | None, hits: Sequence[ArticleHit],
                 threshold: float) -> Decision:
    """Exactly what the answerer decides (pre-check first, then retrieval + threshold)."""
    if pre_reason is not None:
        return Decision(True, pre_reason)
    return decide(hits, threshold)


@dataclass(frozen=True)
class Metrics:
    threshold: float
    items: int
    in_scope: int
    out_of_scope: int
    in_scope_accuracy: float  # non-null items answered with the expected article
    top1_accuracy: float  # non-null items whose best article is the expected one (no threshold)
    oos_recall: float | None  # null items escalated (None: no null items)
    wrong_answer_rate: float  # all items answered with a wrong article
    coverage: float  # all items answered
    escalation_rate: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _arrays(items: Sequence[EvalItem], preds: Sequence[Prediction],
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    expected_null = np.array([i.expected is None for i in items], dtype=bool)
    correct = np.array([p.article_id is not None and p.article_id == i.expected
                        for i, p in zip(items, preds, strict=True)], dtype=bool)
    confidence = np.array([p.confidence for p in preds], dtype=np.float64)
    # Items that escalate whatever the threshold: a pre-check, no hit, or escalate: always.
    forced = np.array([p.forced_reason is not None or p.article_id is None or p.escalate_always
                       for p in preds], dtype=bool)
    return expected_null, correct, confidence, forced


def metrics_at(items: Sequence[EvalItem], preds: Sequence[Prediction],
               threshold: float) -> Metrics:
    expected_null, correct, confidence, forced = _arrays(items, preds)
    answered = ~forced & (confidence >= threshold)
    return _metrics(threshold, expected_null, correct, answered)


def _metrics(threshold: float, expected_null: np.ndarray, correct: np.ndarray,
             answered: np.ndarray) -> Metrics:
    n = len(expected_null)
    n_in = int((~expected_null).sum())
    n_out = n - n_in

    def share(mask: np.ndarray, total: int) -> float:
        return float(mask.sum()) / total if total else 0.0

    return Metrics(
        threshold=threshold, items=n, in_scope=n_in, out_of_scope=n_out,
        in_scope_accuracy=share(answered & correct & ~expected_null, n_in),
        top1_accuracy=share(correct & ~expected_null, n_in),
        oos_recall=share(~answered & expected_null, n_out) if n_out else None,
        wrong_answer_rate=share(answered & ~correct, n),
        coverage=share(answered, n),
        escalation_rate=share(~answered, n))


def sweep(items: Sequence[EvalItem], preds: Sequence[Prediction]) -> list[Metrics]:
    """Metrics at every distinct confidence (plus 0): each threshold that changes a decision."""
    expected_null, correct, confidence, forced = _arrays(items, preds)
    thresholds = np.unique(np.concatenate([[0.0], confidence[~forced]]))
    return [_metrics(float(t), expected_null, correct, ~forced & (confidence >= t))
            for t in thresholds]


def best_threshold(points: Sequence[Metrics], max_wrong_rate: float) -> Metrics | None:
    """The lowest threshold (most coverage) whose wrong-answer rate is within the limit."""
    ok = [m for m in points if m.wrong_answer_rate <= max_wrong_rate]
    return min(ok, key=lambda m: m.threshold) if ok else None


def plot_sweep(points: Sequence[Metrics], chosen: Metrics | None, path: str | Path,
               max_wrong_rate: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot([m.coverage for m in points], [m.wrong_answer_rate for m in points],
            color="tab:blue", label="threshold sweep")
    ax.axhline(max_wrong_rate, color="tab:red", linestyle="--",
               label=f"max wrong-answer rate {max_wrong_rate:.1%}")
    if chosen is not None:
        ax.scatter([chosen.coverage], [chosen.wrong_answer_rate], color="tab:red", zorder=3,
                   label=f"threshold {chosen.threshold:.3f}")
    ax.set_xlabel("coverage (share of messages answered)")
    ax.set_ylabel("wrong-answer rate (share of all messages)")
    ax.set_title("answer or escalate: wrong answers vs coverage")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out

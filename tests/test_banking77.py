"""BANKING77 converter on a small slice, and encoder fine-tuning on a tiny banking KB."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.kb_import import load_knowledge

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "banking77"
_spec = importlib.util.spec_from_file_location("banking77_to_kb",
                                               REPO / "scripts" / "banking77_to_kb.py")
assert _spec is not None and _spec.loader is not None
converter: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(converter)

INTENTS = ["card_arrival", "lost_or_stolen_card", "exchange_rate", "pin_blocked",
           "top_up_failed", "transfer_timing", "cash_withdrawal_charge", "terminate_account"]


def rows(name: str, per_intent: int) -> list[dict[str, str]]:
    """The first `per_intent` rows of each intent in INTENTS from the real data set."""
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        taken: dict[str, int] = defaultdict(int)
        out = []
        for row in csv.DictReader(handle):
            if row["category"] in INTENTS and taken[row["category"]] < per_intent:
                taken[row["category"]] += 1
                out.append(row)
        return out


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small BANKING77 slice: 12 train and 10 test questions for each of 8 intents."""
    root = tmp_path_factory.mktemp("b77")
    for name, n in (("train.csv", 12), ("test.csv", 10)):
        with (root / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["text", "category"])
            writer.writeheader()
            writer.writerows(rows(name, n))
    return root


def test_converter_writes_kb_and_eval_with_shots_and_holdout(slice_dir: Path,
                                                             tmp_path: Path) -> None:
    counts = converter.convert(slice_dir, tmp_path, shots=5, holdout=2, seed=1)
    assert counts == {"articles": 6, "questions": 30, "eval_items": 80, "held_out_intents": 2,
                      "null_items": 20}
    kb = load_knowledge(tmp_path / "kb")
    assert kb.problems == [] and len(kb.articles) == 6
    held = set(json.loads((tmp_path / "holdout.json").read_text()))
    assert len(held) == 2 and held <= set(INTENTS)
    assert all(len(a.questions) == 5 and a.id not in held for a in kb.articles)
    assert kb.by_id()[kb.articles[0].id].url.startswith("https://help.example.com/banking/")
    items = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert len(items) == 80
    assert {i["expected"] for i in items} == {a.id for a in kb.articles} | {None}
    assert sum(i["expected"] is None for i in items) == 20
    # Re-running into the same directory replaces the KB instead of mixing two runs.
    converter.convert(slice_dir, tmp_path, shots=None, holdout=0, seed=1)
    assert len(load_knowledge(tmp_path / "kb").articles) == 8


def test_converter_rejects_bad_holdout(slice_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--holdout"):
        converter.convert(slice_dir, tmp_path, shots=None, holdout=8, seed=0)
    assert converter.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2


def _nn_accuracy(embedder: Any, train: dict[str, list[str]],
                 test: list[tuple[str, str]]) -> tuple[float, float]:
    """1-NN accuracy over the train questions, and the mean margin (right - best wrong)."""
    labels = [k for k, qs in train.items() for _ in qs]
    kb_vecs = np.asarray(embedder.embed([q for qs in train.values() for q in qs]))
    q_vecs = np.asarray(embedder.embed([t for t, _ in test]))
    sims = q_vecs @ kb_vecs.T
    correct, margins = 0, []
    for row, (_, intent) in zip(sims, test, strict=True):
        right = max(s for s, lab in zip(row, labels, strict=True) if lab == intent)
        wrong = max(s for s, lab in zip(row, labels, strict=True) if lab != intent)
        correct += right > wrong
        margins.append(right - wrong)
    return correct / len(test), float(np.mean(margins))


@pytest.mark.slow
def test_fine_tuning_keeps_or_improves_retrieval_and_saves_safetensors(
        slice_dir: Path, tmp_path: Path) -> None:
    from engine.embedder import load_embedder, save_encoder
    from engine.train_encoder import TrainConfig, train_encoder

    train: dict[str, list[str]] = defaultdict(list)
    for row in rows("train.csv", 12):
        train[row["category"]].append(row["text"])
    test = [(r["text"], r["category"]) for r in rows("test.csv", 10)]
    random.Random(0).shuffle(test)
    embedder = load_embedder()
    before_acc, before_margin = _nn_accuracy(embedder, train, test)
    report = train_encoder(embedder, list(train.values()),
                           TrainConfig(epochs=1, batch_size=8, lr=1e-4, trainable_layers=1))
    assert report.steps >= 10 and report.pairs == report.steps * 8
    assert report.trainable_layers == 1
    after_acc, after_margin = _nn_accuracy(embedder, train, test)
    assert after_acc >= before_acc and after_margin > before_margin
    out = save_encoder(embedder.model, embedder.model_dir or tmp_path, tmp_path / "enc")
    reloaded = load_embedder(out)
    probe = ["my card has not arrived yet"]
    np.testing.assert_allclose(np.asarray(reloaded.embed(probe)),
                               np.asarray(embedder.embed(probe)), atol=1e-5)


def test_small_kbs_get_whole_extra_epochs_up_to_min_steps() -> None:
    from engine.train_encoder import TrainConfig, plan_batches

    # 6 groups of 4: a batch holds one pair per group, so an epoch is 24 / 6 = 4 steps.
    groups = [[f"q{g}-{i}" for i in range(4)] for g in range(6)]
    one = plan_batches(groups, TrainConfig(batch_size=6, min_steps=0), random.Random(0))
    assert len(one) == 4
    more = plan_batches(groups, TrainConfig(batch_size=6, min_steps=10), random.Random(0))
    assert len(more) == 12  # ceil(10 / 4) = 3 whole epochs: every question anchors 3 times
    anchors = [a for batch in more for a, _ in batch]
    assert all(anchors.count(q) == 3 for g in groups for q in g)
    capped = plan_batches(groups, TrainConfig(batch_size=6, min_steps=10, max_steps=5),
                          random.Random(0))
    assert len(capped) == 5
    big = plan_batches(groups, TrainConfig(batch_size=6, epochs=5, min_steps=10),
                       random.Random(0))
    assert len(big) == 20  # already past min_steps: the epochs asked for, no more


def test_small_kbs_train_the_whole_encoder_large_ones_the_top_layer() -> None:
    from engine.train_encoder import ALL_LAYERS_MAX_TEXTS, TrainConfig, resolve_trainable_layers

    auto = TrainConfig()
    assert resolve_trainable_layers(auto, ALL_LAYERS_MAX_TEXTS) == 0  # 0: every layer
    assert resolve_trainable_layers(auto, ALL_LAYERS_MAX_TEXTS + 1) == 1
    assert resolve_trainable_layers(TrainConfig(trainable_layers=2), 10) == 2  # as asked

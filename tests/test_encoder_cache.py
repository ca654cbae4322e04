"""The process-wide encoder: loaded once per weights version, vectors remembered per text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adapters.cli_kb import IdentifiedEncoder, load_encoder
from engine.defaults import default_embed_model_path


class CountingEmbedder:
    name = "counting"
    dim = 3
    model_dir = None

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)


def test_vectors_are_remembered_and_rows_keep_order() -> None:
    inner = CountingEmbedder()
    enc = IdentifiedEncoder(inner)
    first = enc.embed(["aa", "b", "aa"])
    assert first.tolist() == [[2, 2, 1], [1, 0, 1], [2, 2, 1]]
    assert inner.calls == [["aa", "b"]]  # duplicates embedded once
    again = enc.embed(["b", "ccc", "aa"])
    assert again.tolist() == [[1, 0, 1], [3, 0, 1], [2, 2, 1]]
    assert inner.calls[-1] == ["ccc"]  # only the new text went to the model
    assert enc.embed([]).shape == (0, 3)


def test_cache_stays_bounded() -> None:
    inner = CountingEmbedder()
    enc = IdentifiedEncoder(inner)
    enc.CACHE_ROWS = 4
    enc.embed(["a", "b", "c"])
    out = enc.embed(["d", "e", "a"])  # overflows: cleared, still answers every row
    assert out[:, 0].tolist() == [1, 1, 1] and len(enc._cache) <= 4


def test_one_encoder_per_weights_version() -> None:
    model = Path(default_embed_model_path())
    assert load_encoder(model) is load_encoder(None)  # the default dir is the same weights
    assert load_encoder(model).name.startswith(load_encoder(model).inner.name + "@")

"""The embedding index: incremental rebuilds, file and Redis storage (fake encoder: fast)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis

from bot.kb_index import (
    FileIndexStorage,
    KbIndex,
    RedisIndexStorage,
    build_index,
    index_name,
)
from bot.keys import Keys
from bot.knowledge import Article, KnowledgeBase


class HashEmbedder:
    """Deterministic unit vectors from a text hash; counts what it was asked to embed."""

    def __init__(self, name: str = "hash-v1", dim: int = 8) -> None:
        self._name = name
        self.dim = dim
        self.calls: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.extend(texts)
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows)


def kb_of(*articles: Article) -> KnowledgeBase:
    return KnowledgeBase(articles=list(articles))


A = Article(id="a", title="Alpha", body="Alpha body.", questions=("what is alpha?", "alpha?"))
B = Article(id="b", title="Beta", body="Beta body.", questions=("what is beta?",))
C = Article(id="c", title="Gamma", body="Gamma body.")


def test_first_build_embeds_every_question_and_passage() -> None:
    emb = HashEmbedder()
    update = build_index(kb_of(A, B), emb)
    assert update.embedded == ["a", "b"] and update.unchanged == 0
    assert update.texts_embedded == 5 == len(emb.calls)  # 3 questions + 2 passages
    assert [e.kind for e in update.index.entries] == ["question", "question", "passage",
                                                      "question", "passage"]
    assert update.index.vectors.shape == (5, 8)


def test_rebuild_touches_only_changed_articles() -> None:
    emb = HashEmbedder()
    first = build_index(kb_of(A, B, C), emb).index
    emb.calls.clear()
    changed_b = replace(B, body="Beta body, now longer.")
    update = build_index(kb_of(A, changed_b), emb, first)  # C removed, B changed
    assert update.embedded == ["b"] and update.removed == ["c"] and update.unchanged == 1
    assert emb.calls == ["what is beta?", "Beta\nBeta body, now longer."]
    # A's vectors are carried over untouched; B's are fresh.
    index = update.index
    np.testing.assert_array_equal(index.vectors[index.rows_of("a")],
                                  first.vectors[first.rows_of("a")])
    assert index.rows_of("c") == []
    emb.calls.clear()
    assert build_index(kb_of(A, changed_b), emb, index).embedded == [] and emb.calls == []


def test_a_different_encoder_re_embeds_everything() -> None:
    first = build_index(kb_of(A, B), HashEmbedder("hash-v1")).index
    other = HashEmbedder("hash-v2")
    update = build_index(kb_of(A, B), other, first)
    assert update.embedded == ["a", "b"] and update.index.encoder == "hash-v2"


async def _roundtrip(storage: FileIndexStorage | RedisIndexStorage) -> None:
    emb = HashEmbedder()
    assert await storage.load() is None
    first = build_index(kb_of(A, B, C), emb)
    await storage.save(first)
    loaded = await storage.load()
    assert isinstance(loaded, KbIndex)
    assert loaded.entries == first.index.entries and loaded.hashes == first.index.hashes
    np.testing.assert_array_equal(loaded.vectors, first.index.vectors)
    second = build_index(kb_of(A, replace(C, body="New gamma.")), emb, loaded)
    await storage.save(second)
    again = await storage.load()
    assert again is not None
    assert sorted(again.hashes) == ["a", "c"]
    assert [e.text for e in again.entries if e.article_id == "c"] == ["Gamma\nNew gamma."]
    np.testing.assert_array_equal(again.vectors, second.index.vectors)


async def test_file_storage_roundtrip_and_incremental_save(tmp_path: Path) -> None:
    storage = FileIndexStorage(tmp_path, "kb")
    await _roundtrip(storage)
    assert (tmp_path / "index-kb.npz").is_file() and (tmp_path / "index-kb.json").is_file()
    # A truncated vector file is not trusted: the caller rebuilds.
    (tmp_path / "index-kb.npz").write_bytes(b"garbage")
    assert await storage.load() is None


async def test_redis_storage_roundtrip_and_removed_articles(
        redis_client: aioredis.Redis, redis_keys: Keys) -> None:
    storage = RedisIndexStorage(redis_client, redis_keys, "kb")
    await _roundtrip(storage)
    assert await redis_client.exists(redis_keys.kb_article("kb", "b")) == 0  # removed
    assert await redis_client.exists(redis_keys.kb_article("kb", "a")) == 1


def test_index_name_is_stable_and_path_specific(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    assert index_name(tmp_path / "x") == index_name(tmp_path / "x" / ".." / "x")
    assert index_name(tmp_path / "x") != index_name(tmp_path / "y")
    assert index_name(tmp_path / "x").startswith("x-")

"""The knowledge base's embedding index: one vector per example question and per passage.

Building it is incremental: each article carries a content hash (its text plus the encoder's
identity), and a rebuild embeds only articles whose hash changed, drops removed ones and keeps
the rest. Storage is a local file pair (`.npz` of float32 vectors, loaded without pickle, plus
a JSON manifest) for the embedded default, or Redis (one JSON value per article, vectors as
base64 float32) when several processes share one index.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import redis.asyncio as aioredis

from bot.keys import Keys
from bot.knowledge import Article, KnowledgeBase
from bot.ports import Embedder

INDEX_FORMAT = 1
PASSAGE_CHARS = 800  # passages stay well inside the encoder's 256-token window
EMBED_BATCH = 256  # texts per progress step

# Called as (texts done, texts total) while embedding.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Entry:
    """One embedded text: an example question or a passage (chunk) of an article."""

    article_id: str
    kind: str  # "question" | "passage"
    text: str


_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def chunk_text(body: str, max_chars: int = PASSAGE_CHARS) -> list[str]:
    """Split an article body into passages of at most ~max_chars, on paragraph boundaries,
    then sentence boundaries for paragraphs that are too long on their own."""
    pieces: list[str] = []
    for para in _PARAGRAPH.split(body.strip()):
        para = para.strip()
        if not para:
            continue
        if len(para) <= max_chars:
            pieces.append(para)
            continue
        pieces.extend(s for s in _SENTENCE.split(para) if s.strip())
    passages: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > max_chars:
            passages.append(current)
            current = ""
        current = f"{current}\n\n{piece}" if current else piece
        while len(current) > max_chars:  # one sentence longer than a passage: hard cut
            passages.append(current[:max_chars])
            current = current[max_chars:]
    if current:
        passages.append(current)
    return passages


def article_passages(article: Article, max_chars: int = PASSAGE_CHARS) -> list[str]:
    """Passages that stand on their own: each starts with the article's title."""
    return [f"{article.title}\n{chunk}" for chunk in chunk_text(article.body, max_chars)]


def article_entries(article: Article) -> list[Entry]:
    entries = [Entry(article.id, "question", q) for q in dict.fromkeys(article.questions)]
    entries += [Entry(article.id, "passage", p) for p in article_passages(article)]
    return entries


def article_hash(article: Article, encoder: str) -> str:
    payload = json.dumps([INDEX_FORMAT, encoder, article.title, article.body,
                          list(article.questions)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


@dataclass
class KbIndex:
    encoder: str
    dim: int
    entries: list[Entry] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    hashes: dict[str, str] = field(default_factory=dict)  # article id -> content hash

    def rows_of(self, article_id: str) -> list[int]:
        return [i for i, e in enumerate(self.entries) if e.article_id == article_id]


@dataclass(frozen=True)
class IndexUpdate:
    index: KbIndex
    embedded: list[str]  # article ids (re-)embedded
    removed: list[str]
    unchanged: int
    texts_embedded: int


def embed_texts(embedder: Embedder, texts: Sequence[str],
                progress: Progress | None = None) -> np.ndarray:
    out: list[np.ndarray] = []
    if progress is not None:
        progress(0, len(texts))
    for start in range(0, len(texts), EMBED_BATCH):
        chunk = list(texts[start:start + EMBED_BATCH])
        out.append(np.asarray(embedder.embed(chunk), dtype=np.float32))
        if progress is not None:
            progress(min(start + EMBED_BATCH, len(texts)), len(texts))
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out, axis=0)


def build_index(kb: KnowledgeBase, embedder: Embedder, previous: KbIndex | None = None,
                progress: Progress | None = None) -> IndexUpdate:
    """Embed what changed since `previous` (everything when it is None or used another
    encoder); articles whose hash is unchanged keep their stored vectors."""
    encoder = embedder.name
    if previous is not None and previous.encoder != encoder:
        previous = None
    old_rows: dict[str, list[int]] = {}
    if previous is not None:
        for i, entry in enumerate(previous.entries):
            old_rows.setdefault(entry.article_id, []).append(i)
    hashes = {a.id: article_hash(a, encoder) for a in kb.articles}
    changed = [a for a in kb.articles
               if previous is None or previous.hashes.get(a.id) != hashes[a.id]]
    new_entries = {a.id: article_entries(a) for a in changed}
    texts = [e.text for a in changed for e in new_entries[a.id]]
    fresh = embed_texts(embedder, texts, progress)
    dim = fresh.shape[1] if len(texts) else (previous.dim if previous is not None else 0)
    entries: list[Entry] = []
    blocks: list[np.ndarray] = []
    cursor = 0
    changed_ids = {a.id for a in changed}
    for article in kb.articles:
        if article.id in changed_ids:
            n = len(new_entries[article.id])
            entries.extend(new_entries[article.id])
            blocks.append(fresh[cursor:cursor + n])
            cursor += n
        else:
            assert previous is not None
            rows = old_rows.get(article.id, [])
            entries.extend(previous.entries[i] for i in rows)
            blocks.append(previous.vectors[rows])
    vectors = (np.concatenate(blocks, axis=0).astype(np.float32, copy=False)
               if blocks else np.zeros((0, dim), np.float32))
    removed = sorted(set(previous.hashes) - set(hashes)) if previous is not None else []
    index = KbIndex(encoder=encoder, dim=dim, entries=entries, vectors=vectors, hashes=hashes)
    return IndexUpdate(index, [a.id for a in changed], removed,
                       len(kb.articles) - len(changed), len(texts))


class IndexStorage(Protocol):
    async def load(self) -> KbIndex | None: ...

    async def save(self, update: IndexUpdate) -> None: ...

    def describe(self) -> str: ...


def _manifest(index: KbIndex) -> dict[str, Any]:
    return {"format": INDEX_FORMAT, "encoder": index.encoder, "dim": index.dim,
            "hashes": index.hashes}


class FileIndexStorage:
    """`<dir>/index-<name>.npz` (vectors) + `.json` (entries, hashes), replaced atomically."""

    def __init__(self, directory: str | Path, name: str) -> None:
        self.base = Path(directory) / f"index-{name}"

    def describe(self) -> str:
        return str(self.base.with_suffix(".npz"))

    async def load(self) -> KbIndex | None:
        meta_path, vec_path = self.base.with_suffix(".json"), self.base.with_suffix(".npz")
        if not meta_path.is_file() or not vec_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            with np.load(vec_path, allow_pickle=False) as data:
                vectors = np.asarray(data["vectors"], dtype=np.float32)
        except (OSError, ValueError, KeyError):
            return None  # unreadable or half-written: rebuild rather than fail
        if meta.get("format") != INDEX_FORMAT:
            return None
        entries = [Entry(*e) for e in meta["entries"]]
        if len(entries) != len(vectors):
            return None
        return KbIndex(encoder=meta["encoder"], dim=int(meta["dim"]), entries=entries,
                       vectors=vectors, hashes=dict(meta["hashes"]))

    async def save(self, update: IndexUpdate) -> None:
        index = update.index
        self.base.parent.mkdir(parents=True, exist_ok=True)
        meta = _manifest(index) | {"entries": [[e.article_id, e.kind, e.text]
                                               for e in index.entries]}
        # The vectors go first: a crash between the two renames leaves a manifest whose
        # entry count no longer matches, which load() treats as "no index" (a full rebuild).
        # Per-writer temporary names: two processes refreshing at once never share a file.
        unique = f".{os.getpid()}-{secrets.token_hex(4)}.tmp"
        tmp_vec = self.base.with_name(self.base.name + unique + ".npz")
        np.savez(tmp_vec, vectors=index.vectors)
        os.replace(tmp_vec, self.base.with_suffix(".npz"))
        tmp_meta = self.base.with_name(self.base.name + unique + ".json")
        tmp_meta.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp_meta, self.base.with_suffix(".json"))


def _encode_vectors(vectors: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vectors, np.float32).tobytes()).decode()


def _decode_vectors(text: str, dim: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.float32).reshape(-1, dim)


class RedisIndexStorage:
    """A manifest key plus one JSON value per article; a rebuild writes only what changed."""

    def __init__(self, client: aioredis.Redis, keys: Keys, name: str) -> None:
        self.client = client
        self.keys = keys
        self.name = name

    def describe(self) -> str:
        return f"redis {self.keys.kb_manifest(self.name)}"

    async def load(self) -> KbIndex | None:
        raw = await self.client.get(self.keys.kb_manifest(self.name))
        if raw is None:
            return None
        meta = json.loads(raw)
        if meta.get("format") != INDEX_FORMAT:
            return None
        ids = list(meta["hashes"])
        values = await self.client.mget([self.keys.kb_article(self.name, i) for i in ids]) \
            if ids else []
        dim = int(meta["dim"])
        entries: list[Entry] = []
        blocks: list[np.ndarray] = []
        for article_id, value in zip(ids, values, strict=True):
            if value is None:
                return None  # partly written: rebuild
            doc = json.loads(value)
            entries.extend(Entry(article_id, kind, text) for kind, text in doc["entries"])
            blocks.append(_decode_vectors(doc["vectors"], dim))
        vectors = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
        return KbIndex(encoder=meta["encoder"], dim=dim, entries=entries, vectors=vectors,
                       hashes=dict(meta["hashes"]))

    async def save(self, update: IndexUpdate) -> None:
        index = update.index
        async with self.client.pipeline(transaction=True) as pipe:
            for article_id in update.embedded:
                rows = index.rows_of(article_id)
                doc = {"entries": [[index.entries[i].kind, index.entries[i].text] for i in rows],
                       "vectors": _encode_vectors(index.vectors[rows])}
                pipe.set(self.keys.kb_article(self.name, article_id), json.dumps(doc))
            for article_id in update.removed:
                pipe.delete(self.keys.kb_article(self.name, article_id))
            pipe.set(self.keys.kb_manifest(self.name), json.dumps(_manifest(index)))
            await pipe.execute()


def index_name(kb_dir: str | Path) -> str:
    """A stable short name for a KB location (its resolved path), used in file and key names."""
    resolved = str(Path(kb_dir).resolve())
    return f"{re.sub(r'[^A-Za-z0-9_-]+', '-', Path(resolved).name)[:40]}-" \
           f"{hashlib.sha256(resolved.encode()).hexdigest()[:10]}"

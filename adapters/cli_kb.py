"""`supportbot kb index | search | train`: build the knowledge-base index, try queries against
it, and fine-tune the encoder on the KB's example questions.

Also the composition helpers the bot and `supportbot eval` share: which encoder, which index
storage (Redis when SUPPORTBOT_REDIS_URL is set, else a local file under --index-dir).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bot.kb_import import load_knowledge
from bot.kb_index import (
    FileIndexStorage,
    IndexStorage,
    IndexUpdate,
    RedisIndexStorage,
    build_index,
    index_name,
)
from bot.keys import Keys
from bot.knowledge import KnowledgeBase
from bot.retrieval import HybridRetriever, LazyRetriever
from bot.settings import Settings, SettingsError, load_settings

DEFAULT_INDEX_DIR = Path(os.environ.get("SUPPORTBOT_INDEX_DIR", ".supportbot"))


# ---- shared composition helpers -----------------------------------------------------------


def encoder_path(settings: Settings, override: str | Path | None = None) -> Path | None:
    """--encoder, else SUPPORTBOT_EMBED_MODEL, else None (the packaged all-MiniLM-L6-v2)."""
    chosen = override or settings.embed_model
    return Path(chosen) if chosen else None


def _weights_stamp(model_dir: Path) -> str:
    weights = model_dir / "model.safetensors"
    stat = weights.stat() if weights.is_file() else None
    return f"{stat.st_size}-{stat.st_mtime_ns}" if stat else "unknown"


class IdentifiedEncoder:
    """The engine's embedder under a name that changes whenever its weights do (path, size
    and mtime of model.safetensors), so re-training an encoder in place re-embeds the index
    instead of mixing old and new vectors.

    It remembers the vectors of texts it has embedded (bounded): rebuilding an index for
    another store prefix, `kb reload` and repeated questions cost a lookup, not a forward."""

    CACHE_ROWS = 50_000

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._name = f"{inner.name}@{_weights_stamp(Path(inner.model_dir or '.'))}"
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()  # embed runs in worker threads (asyncio.to_thread)

    @property
    def name(self) -> str:
        return self._name

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        with self._lock:
            known = {t: self._cache[t] for t in texts if t in self._cache}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            vectors = np.asarray(self.inner.embed(missing), dtype=np.float32)
            known.update(zip(missing, vectors, strict=True))
            with self._lock:
                if len(self._cache) + len(missing) > self.CACHE_ROWS:
                    self._cache.clear()  # simple and bounded; a refill is one batch away
                self._cache.update(zip(missing, vectors, strict=True))
        if not texts:
            return np.zeros((0, int(self.inner.dim)), dtype=np.float32)
        return np.stack([known[t] for t in texts])


_ENCODERS: dict[tuple[str, str], IdentifiedEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def load_encoder(path: Path | None) -> IdentifiedEncoder:
    """One encoder per model directory and weights version in a process: every bot stack,
    reload and eval in the process shares it instead of loading the weights again."""
    from engine.embedder import default_model_dir, load_embedder  # late: torch costs a second

    model_dir = Path(path) if path is not None else default_model_dir()
    key = (str(model_dir.resolve()), _weights_stamp(model_dir))
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = IdentifiedEncoder(load_embedder(model_dir))
        return _ENCODERS[key]


def index_storage(settings: Settings, kb_dir: Path,
                  index_dir: Path = DEFAULT_INDEX_DIR) -> IndexStorage:
    name = index_name(kb_dir)
    if settings.redis_url:
        import redis.asyncio as aioredis

        client = aioredis.from_url(settings.redis_url, decode_responses=True)
        return RedisIndexStorage(client, Keys(settings.redis_prefix), name)
    return FileIndexStorage(index_dir, name)


def lazy_retriever(settings: Settings, kb: KnowledgeBase, kb_dir: Path,
                   index_dir: Path = DEFAULT_INDEX_DIR) -> LazyRetriever:
    path = encoder_path(settings)
    return LazyRetriever(kb, lambda: load_encoder(path),
                         index_storage(settings, kb_dir, index_dir))


def load_kb_reporting(kb_dir: Path) -> KnowledgeBase:
    """Load the KB, printing each skipped file or row to stderr (the rest still loads)."""
    kb = load_knowledge(kb_dir)
    for problem in kb.problems:
        print(f"skipped {problem}", file=sys.stderr)
    return kb


def _progress_bar(desc: str) -> Any:
    from tqdm import tqdm

    bar: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="text", file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total and bar is not None:
            bar.close()

    return update


async def refresh_index(settings: Settings, kb: KnowledgeBase, kb_dir: Path, embedder: Any,
                        index_dir: Path, quiet: bool = False) -> IndexUpdate:
    """Bring the stored index up to date (only changed articles are embedded) and save it."""
    storage = index_storage(settings, kb_dir, index_dir)
    previous = await storage.load()
    progress = None if quiet else _progress_bar("embedding")
    update = await asyncio.to_thread(build_index, kb, embedder, previous, progress)
    if update.embedded or update.removed or previous is None:
        await storage.save(update)
    if not quiet:
        print(f"index: {len(kb.articles)} articles, {len(update.index.entries)} texts; "
              f"re-embedded {len(update.embedded)} article(s) ({update.texts_embedded} texts), "
              f"{update.unchanged} unchanged, {len(update.removed)} removed -> "
              f"{storage.describe()}", file=sys.stderr)
    close = getattr(storage, "client", None)
    if close is not None:
        await close.aclose()
    return update


# ---- subcommands --------------------------------------------------------------------------


def register(sub: Any) -> None:
    kb = sub.add_parser("kb", help="knowledge base: index, search, train the encoder")
    kb_sub = kb.add_subparsers(dest="kb_command", metavar="KB_COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--kb", type=Path, help="knowledge-base directory or file "
                                               "(default: settings)")
        p.add_argument("--encoder", type=Path, help="encoder directory (default: "
                                                    "SUPPORTBOT_EMBED_MODEL or the packaged "
                                                    "all-MiniLM-L6-v2)")
        p.add_argument("--index-dir", type=Path, default=DEFAULT_INDEX_DIR,
                       help="where the local index file lives (no Redis URL)")

    p = kb_sub.add_parser("index", help="build or refresh the index (changed articles only)")
    common(p)
    p.set_defaults(func=run_index)

    p = kb_sub.add_parser("search", help="print the ranked articles for a query")
    common(p)
    p.add_argument("query", help="what a customer might ask")
    p.add_argument("-k", type=int, default=5, help="hits to show")
    p.set_defaults(func=run_search)

    p = kb_sub.add_parser("train", help="fine-tune the encoder on the KB's example questions")
    common(p)
    p.add_argument("--out", type=Path, help="output directory (default: "
                                            "<index-dir>/encoder-<kb name>)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--layers", type=int, help="top layers to train (0 = all; default: all "
                                               "for a KB of <= 2,000 texts, else the top one)")
    p.add_argument("--min-steps", type=int, default=50,
                   help="small KBs: whole extra epochs until this many steps")
    p.add_argument("--max-steps", type=int, help="stop after this many steps")
    p.set_defaults(func=run_train)
    kb.set_defaults(func=lambda _args: (kb.print_help(), 2)[1])


def _setup(args: argparse.Namespace,
           ) -> tuple[Settings, KnowledgeBase, IdentifiedEncoder] | None:
    """Settings, the KB (problems printed) and the encoder; None after printing why not."""
    try:
        settings = load_settings(**({"kb_dir": args.kb} if args.kb else {}))
        kb = load_kb_reporting(settings.kb_dir)
    except (SettingsError, FileNotFoundError, ValueError) as exc:
        print(f"kb: {exc}", file=sys.stderr)
        return None
    if not kb.articles:
        print(f"kb: no articles in {settings.kb_dir}", file=sys.stderr)
        return None
    return settings, kb, load_encoder(encoder_path(settings, args.encoder))


def run_index(args: argparse.Namespace) -> int:
    setup = _setup(args)
    if setup is None:
        return 2
    settings, kb, embedder = setup
    started = time.perf_counter()
    asyncio.run(refresh_index(settings, kb, settings.kb_dir, embedder, args.index_dir))
    print(f"indexed in {time.perf_counter() - started:.1f} s with {embedder.name}",
          file=sys.stderr)
    return 0


def run_search(args: argparse.Namespace) -> int:
    setup = _setup(args)
    if setup is None:
        return 2
    settings, kb, embedder = setup
    update = asyncio.run(refresh_index(settings, kb, settings.kb_dir, embedder, args.index_dir,
                                       quiet=True))
    retriever = HybridRetriever(kb, update.index, embedder)
    hits = retriever.search_many([args.query], k=max(1, args.k))[0]
    print(f"{'confidence':>10} {'dense':>6} {'votes':>6} {'lexical':>7}  article")
    for hit in hits:
        print(f"{hit.confidence:10.3f} {hit.best:6.3f} {hit.votes:6.3f} {hit.lexical:7.3f}  "
              f"{hit.article.id}: {hit.article.title}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    setup = _setup(args)
    if setup is None:
        return 2
    settings, kb, embedder = setup
    from engine.embedder import save_encoder
    from engine.train_encoder import TrainConfig, train_encoder

    groups = [[*a.questions, a.title] for a in kb.articles if a.questions]
    out = args.out or args.index_dir / f"encoder-{index_name(settings.kb_dir)}"
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         trainable_layers=args.layers, min_steps=args.min_steps,
                         max_steps=args.max_steps)
    from tqdm import tqdm

    bar: Any = None

    def on_step(step: int, total: int, loss: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="training", unit="step", file=sys.stderr)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")

    try:
        report = train_encoder(embedder.inner, groups, config, on_step)
    except ValueError as exc:
        print(f"kb train: {exc}", file=sys.stderr)
        return 2
    if bar is not None:
        bar.close()
    save_encoder(embedder.inner.model, embedder.inner.model_dir, out)
    layers = f"top {report.trainable_layers}" if report.trainable_layers else "all"
    print(f"trained {report.steps} steps ({layers} layers) on {report.pairs} pairs in "
          f"{report.seconds:.0f} s "
          f"(loss {report.first_loss:.3f} -> {report.last_loss:.3f}); saved {out}")
    print(f"use it: SUPPORTBOT_EMBED_MODEL={out} supportbot kb index   (or --encoder {out})")
    return 0

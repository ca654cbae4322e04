"""Fine-tune a sentence encoder on labelled example questions (multiple-negatives ranking loss).

    report = train_encoder(embedder, groups, epochs=1)   # groups[i]: texts that mean the same
    save_encoder(embedder.model, embedder.model_dir, out_dir)

Each step takes a batch of (anchor, positive) pairs drawn from *different* groups, so every
other pair's positive is a true negative (no two rows of a batch share a label). The loss is
symmetric cross-entropy over the scaled cosine-similarity matrix (in-batch negatives), with
AdamW, linear warm-up then linear decay.

Only the top `trainable_layers` layers train. The frozen lower layers' token states are
computed once per text and cached, so a step runs just the top layers forward and backward:
one epoch over a 9,000-question knowledge base takes about 1.5 minutes on one CPU thread,
where updating the whole encoder takes about 8 (and on BANKING77 it was no more accurate).
By default (`trainable_layers=None`) a small knowledge base (up to `ALL_LAYERS_MAX_TEXTS`
texts) trains the whole encoder, which costs a minute or two there and generalises better
from a few questions per article; a larger one trains the top layer.

A small knowledge base gets more passes: a run has at least `min_steps` steps (whole epochs),
since a few dozen questions per article make an epoch too short to move the weights.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.bert import BertModel, l2_normalize, mean_pool
from engine.embedder import Embedder


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 1.0  # passes over the example questions (each is an anchor once per epoch)
    batch_size: int = 64  # pairs per step; at most one pair per group in a batch
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of steps with a linearly rising learning rate
    scale: float = 20.0  # inverse temperature of the cosine similarities
    max_length: int = 48  # support questions are short; longer ones are cut for speed
    # Only the top layers train; the frozen lower layers run once per text (cached), which
    # makes an epoch about as cheap as embedding the questions twice. 0 = train every layer;
    # None = every layer for a small KB (<= ALL_LAYERS_MAX_TEXTS texts), else the top one.
    trainable_layers: int | None = None
    seed: int = 0
    min_steps: int = 50  # small KBs: whole extra epochs until a run has at least this many
    max_steps: int | None = None  # cap (tests and quick runs)


ALL_LAYERS_MAX_TEXTS = 2000


def resolve_trainable_layers(cfg: TrainConfig, n_texts: int) -> int:
    """The number of top layers to train (0 = all) for a KB of `n_texts` distinct texts."""
    if cfg.trainable_layers is not None:
        return cfg.trainable_layers
    return 0 if n_texts <= ALL_LAYERS_MAX_TEXTS else 1


@dataclass(frozen=True)
class TrainReport:
    steps: int
    pairs: int
    first_loss: float
    last_loss: float
    seconds: float
    trainable_layers: int = 0  # as resolved (0 = all)


def make_pair_batches(groups: Sequence[Sequence[str]], batch_size: int, epochs: float,
                      rng: random.Random) -> list[list[tuple[str, str]]]:
    """Batches of (anchor, positive) pairs with distinct groups within every batch.

    Every text of a group with >= 2 distinct texts is an anchor once per epoch, paired with
    another random text of its group. Groups are interleaved round-robin so a batch draws
    from as many groups as possible.
    """
    usable = [list(dict.fromkeys(g)) for g in groups]
    usable = [g for g in usable if len(g) >= 2]
    if len(usable) < 2:
        raise ValueError("fine-tuning needs at least two groups with two or more example "
                         "questions each")
    batch_size = min(batch_size, len(usable))
    batches: list[list[tuple[str, str]]] = []
    whole, frac = int(epochs), epochs - int(epochs)
    for epoch in range(whole + (1 if frac > 0 else 0)):
        queues: list[list[tuple[int, tuple[str, str]]]] = []
        for gi, g in enumerate(usable):
            anchors = g[:]
            rng.shuffle(anchors)
            if epoch == whole:  # the fractional last epoch
                anchors = anchors[: max(1, round(len(anchors) * frac))]
            pairs = []
            for a in anchors:
                p = rng.choice(g)
                while p == a:
                    p = rng.choice(g)
                pairs.append((gi, (a, p)))
            queues.append(pairs)
        batches.extend(_distinct_group_batches(queues, batch_size, rng))
    return batches


def plan_batches(groups: Sequence[Sequence[str]], cfg: TrainConfig,
                 rng: random.Random) -> list[list[tuple[str, str]]]:
    """The run's batches: `cfg.epochs` passes, or as many whole passes as reach
    `cfg.min_steps` steps, cut at `cfg.max_steps`."""
    batches = make_pair_batches(groups, cfg.batch_size, cfg.epochs, rng)
    if batches and len(batches) < cfg.min_steps:
        per_epoch = len(batches) / cfg.epochs
        batches = make_pair_batches(groups, cfg.batch_size,
                                    math.ceil(cfg.min_steps / per_epoch), rng)
    return batches[: cfg.max_steps] if cfg.max_steps is not None else batches


def _distinct_group_batches(queues: list[list[tuple[int, tuple[str, str]]]], batch_size: int,
                            rng: random.Random) -> list[list[tuple[str, str]]]:
    batches: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    seen: set[int] = set()
    while any(queues):
        # Fullest queues first so big groups do not pile up at the end, where they would
        # form batches with few distinct groups. A group already in the open batch waits.
        order = sorted(range(len(queues)), key=lambda i: (-len(queues[i]), rng.random()))
        progressed = False
        for qi in order:
            if not queues[qi] or queues[qi][-1][0] in seen:
                continue
            gi, pair = queues[qi].pop()
            current.append(pair)
            seen.add(gi)
            progressed = True
            if len(current) == batch_size:
                batches.append(current)
                current, seen = [], set()
        if not progressed and current:  # only groups of the open batch are left
            batches.append(current)
            current, seen = [], set()
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return [b for b in batches if len(b) >= 2]


def mnr_loss(anchors: torch.Tensor, positives: torch.Tensor, scale: float) -> torch.Tensor:
    """Symmetric multiple-negatives ranking loss over unit vectors [B, H] x [B, H]."""
    logits = scale * anchors @ positives.T
    target = torch.arange(len(anchors), device=anchors.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _cache_lower_states(embedder: Embedder, texts: Sequence[str], frozen: int,
                        max_length: int) -> list[Tensor]:
    """Token states [T, H] of each text after the embeddings and the `frozen` lower layers."""
    model = embedder.model
    ids = [row[: max_length - 1] + row[-1:] if len(row) > max_length else row
           for row in embedder.token_ids(texts)]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[Tensor] = [torch.empty(0)] * len(ids)
    with torch.inference_mode():
        for start in range(0, len(order), 128):
            chunk = order[start:start + 128]
            input_ids, mask = embedder.pad([ids[i] for i in chunk])
            x = model.embeddings(input_ids.to(embedder.device))
            attn = mask.to(embedder.device).bool()[:, None, None, :]
            for layer in model.encoder.layer[:frozen]:
                x = layer(x, attn)
            for row, i in enumerate(chunk):
                out[i] = x[row, : len(ids[i])].clone()
    return out


def _encode_top(model: BertModel, states: Sequence[Tensor], frozen: int) -> Tensor:
    """Sentence vectors from cached lower states through the trainable top layers."""
    length = max(len(s) for s in states)
    x = torch.zeros((len(states), length, states[0].shape[-1]), dtype=states[0].dtype,
                    device=states[0].device)
    mask = torch.zeros((len(states), length), dtype=torch.long, device=x.device)
    for i, s in enumerate(states):
        x[i, : len(s)] = s
        mask[i, : len(s)] = 1
    attn = mask.bool()[:, None, None, :]
    for layer in model.encoder.layer[frozen:]:
        x = layer(x, attn)
    return l2_normalize(mean_pool(x, mask))


def train_encoder(embedder: Embedder, groups: Sequence[Sequence[str]],
                  config: TrainConfig | None = None,
                  on_step: Callable[[int, int, float], None] | None = None) -> TrainReport:
    """Fine-tune `embedder.model` in place; `on_step(step, total, loss)` reports progress."""
    cfg = config or TrainConfig()
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    batches = plan_batches(groups, cfg, rng)
    total = len(batches)
    model = embedder.model
    n_layers = len(model.encoder.layer)
    started = time.perf_counter()
    texts = list(dict.fromkeys(t for b in batches for pair in b for t in pair))
    layers = resolve_trainable_layers(cfg, len({t for g in groups for t in g}))
    frozen = n_layers - layers if 0 < layers < n_layers else 0
    cached = dict(zip(texts, _cache_lower_states(embedder, texts, frozen, cfg.max_length),
                      strict=True))
    params = [p for layer in model.encoder.layer[frozen:] for p in layer.parameters()]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    warmup_steps = max(1, math.ceil(total * cfg.warmup))

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total - step) / max(1, total - warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    losses: list[float] = []
    was_training = model.training
    model.train()
    try:
        for step, batch in enumerate(batches):
            states = [cached[a] for a, _ in batch] + [cached[p] for _, p in batch]
            vecs = _encode_top(model, states, frozen)
            loss = mnr_loss(vecs[: len(batch)], vecs[len(batch):], cfg.scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(step + 1, total, losses[-1])
    finally:
        model.train(was_training)
    pairs = sum(len(b) for b in batches)
    return TrainReport(steps=total, pairs=pairs, first_loss=losses[0] if losses else math.nan,
                       last_loss=losses[-1] if losses else math.nan,
                       seconds=time.perf_counter() - started,
                       trainable_layers=n_layers - frozen if frozen else 0)

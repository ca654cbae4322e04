"""One logical reply shown as several platform messages, kept in step as it changes.

A streamed answer may outgrow the platform's per-message limit (Discord: 2,000 characters).
The reply is then shown as consecutive messages; each update edits only the pieces whose
content changed, posts the new ones and deletes the ones no longer needed, so a long
streaming answer costs as few API calls (and rate-limit budget) as possible.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)  # one message's payload as the adapter renders it


@dataclass(frozen=True)
class ChunkPlan(Generic[P]):
    edits: tuple[tuple[int, P], ...]  # (index of an existing message, its new payload)
    posts: tuple[P, ...]  # payloads to post after the existing messages, in order
    deletes: tuple[int, ...]  # indexes of existing messages no longer needed


def plan_update(shown: Sequence[P], wanted: Sequence[P]) -> ChunkPlan[P]:
    """What to do so that the messages showing `shown` show `wanted` instead."""
    edits = tuple((i, w) for i, (s, w) in enumerate(zip(shown, wanted, strict=False)) if s != w)
    posts = tuple(wanted[len(shown):])
    deletes = tuple(range(len(wanted), len(shown)))
    return ChunkPlan(edits, posts, deletes)

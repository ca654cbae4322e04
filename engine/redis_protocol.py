"""What goes over Redis between engine clients and workers (JSON, never pickle). Torch-free.

Request stream entry: ``{"id", "kind": "chat" | "embed", "body": JSON}``.
Output stream entry: ``{"attempt", "type", "data": JSON}``, where type is

    start      a worker began attempt N (a new N means: forget earlier attempts' output)
    chunk      one Chunk of attempt N
    end        the final Chunk of attempt N (has finish_reason)
    embedding  {"vectors": [[...], ...]}
    error      {"error": "..."}: the request failed for good (dead-lettered)

Attempt numbers are the request's delivery count in the consumer group, so an entry written
late by a worker presumed dead carries a smaller number and the client ignores it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.requests import GenerationParams

START, CHUNK, END, EMBEDDING, ERROR = "start", "chunk", "end", "embedding", "error"

# What XRANGE / XREAD(GROUP) return with decode_responses=True (redis-py types them loosely).
Entries = list[tuple[str, dict[str, str]]]
ReadReply = list[tuple[str, Entries]]


def chat_request(request_id: str, messages: Sequence[Mapping[str, Any]],
                 params: GenerationParams, timeout_s: float | None) -> dict[str, str]:
    body = {"messages": [dict(m) for m in messages], "params": params.to_json(),
            "timeout_s": timeout_s}
    return {"id": request_id, "kind": "chat", "body": json.dumps(body)}


def embed_request(request_id: str, texts: Sequence[str]) -> dict[str, str]:
    return {"id": request_id, "kind": "embed", "body": json.dumps({"texts": list(texts)})}


def output_entry(attempt: int, kind: str, data: Mapping[str, Any]) -> dict[str, str]:
    return {"attempt": str(attempt), "type": kind, "data": json.dumps(data)}


@dataclass(frozen=True)
class OutputEntry:
    attempt: int
    kind: str
    data: dict[str, Any]

    @classmethod
    def parse(cls, fields: Mapping[str, str]) -> OutputEntry:
        return cls(int(fields["attempt"]), fields["type"], json.loads(fields.get("data", "{}")))

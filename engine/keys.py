"""The engine's Redis key names, in one place (the engine must not import bot/keys.py).

    {prefix}:engine:req              stream, consumer group "engine": one entry per request
    {prefix}:engine:out:{request}    stream: the request's output, entries tagged by attempt
    {prefix}:engine:cancel:{request} string: the client gave up; the worker stops generating
    {prefix}:engine:dead             stream: requests that failed too many attempts
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineKeys:
    prefix: str = "sb"
    group: str = "engine"

    @property
    def requests(self) -> str:
        return f"{self.prefix}:engine:req"

    def output(self, request_id: str) -> str:
        return f"{self.prefix}:engine:out:{request_id}"

    def cancel(self, request_id: str) -> str:
        return f"{self.prefix}:engine:cancel:{request_id}"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:engine:dead"

"""What a generation request asks for and what comes back, shared by the engine and its clients.

Torch-free on purpose: the Redis and HTTP clients live in adapter processes that never load a
model, and importing torch there would cost seconds and hundreds of MB for nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import EngineError

# finish_reason values (the bot's GenerationChunk documents the same set).
STOP, LENGTH, CANCELLED, ERROR = "stop", "length", "cancelled", "error"


class EngineBusy(EngineError):
    """The engine's waiting queue is full: try later (HTTP 429), do not queue unboundedly."""


@dataclass(frozen=True)
class Chunk:
    """One streamed piece of a generation. Satisfies ``bot.ports.GenerationChunk``.

    ``token_ids``/``logprobs`` are the tokens sampled in this step. ``text`` can lag them by a
    few characters: text that might be the start of a stop string, or half a UTF-8 character,
    is held back until it is known to be safe, so concatenating every ``text`` gives exactly the
    answer without the stop string. ``error`` says why when ``finish_reason == "error"``.
    """

    text: str
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()
    finish_reason: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "token_ids": list(self.token_ids),
                "logprobs": list(self.logprobs), "finish_reason": self.finish_reason,
                "error": self.error}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Chunk:
        return cls(text=str(data.get("text", "")),
                   token_ids=tuple(int(t) for t in data.get("token_ids", ())),
                   logprobs=tuple(float(p) for p in data.get("logprobs", ())),
                   finish_reason=data.get("finish_reason"), error=data.get("error"))


@dataclass(frozen=True)
class GenerationParams:
    """What a request asks for. ``temperature == 0`` is greedy (argmax); logprobs are always
    those of the model's own distribution, which is what confidence scores want.

    The request-level twin of ``engine.sampling.SamplingParams``: torch-free and JSON-ready so
    the Redis and HTTP clients can build it, and named ``max_tokens`` as in the OpenAI API.
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 0  # 0 = no limit
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_json(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature,
                "top_k": self.top_k, "top_p": self.top_p,
                "repetition_penalty": self.repetition_penalty, "seed": self.seed,
                "stop": list(self.stop), "ignore_eos": self.ignore_eos}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GenerationParams:
        seed = data.get("seed")
        return cls(max_tokens=int(data.get("max_tokens", 256)),
                   temperature=float(data.get("temperature", 0.0)),
                   top_k=int(data.get("top_k", 0)), top_p=float(data.get("top_p", 1.0)),
                   repetition_penalty=float(data.get("repetition_penalty", 1.0)),
                   seed=None if seed is None else int(seed),
                   stop=tuple(str(s) for s in data.get("stop", ())),
                   ignore_eos=bool(data.get("ignore_eos", False)))

"""Typed errors for the engine, so callers can tell a bad model file from a bug.

Every loading error names the file it is about: "the model failed to load" is useless to someone
running a bot with three model paths configured.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class for everything the engine raises on purpose."""


class ModelLoadError(EngineError):
    """A model (or its tokenizer) could not be loaded from ``path``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ModelNotFound(ModelLoadError):
    """No model file at the given path, and no default model package installed."""


class UnsupportedArchitecture(ModelLoadError):
    """The file describes a model family (or a feature of one) this engine does not implement."""


class UnsupportedQuantType(ModelLoadError):
    """A tensor is stored in a quantisation format the loader cannot dequantise."""


class CorruptModelFile(ModelLoadError):
    """The file is truncated or its structure is inconsistent."""


class MissingTokenizer(ModelLoadError):
    """The model has no tokenizer we can build (no vocab in the GGUF, no tokenizer.json)."""


class ContextLengthExceeded(EngineError):
    """A request needs more positions than the KV cache or the model allows."""

"""Typed errors raised by the engine, so callers can tell a bad model directory from a bug.

Every message names the offending path: the person reading it is usually fixing a deployment.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class for everything the engine raises on purpose."""


class ModelLoadError(EngineError):
    """A model directory or file could not be loaded."""


class MissingTokenizer(ModelLoadError):
    """The model directory has no usable tokenizer file."""


class CorruptModelFile(ModelLoadError):
    """A weights file is missing, truncated, or does not match the config."""


class UnsupportedArchitecture(ModelLoadError):
    """The config describes a model family or variant the engine does not implement."""

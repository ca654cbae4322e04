"""Fixtures for the engine service tests: one tiny model directory per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine_service.tiny import save_tiny


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny-llama"))

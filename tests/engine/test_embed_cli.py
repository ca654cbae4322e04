"""`supportbot embed`: JSON and human output, and a clean exit code for a bad model path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from adapters.cli import main


def test_embed_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", "How do I reset my password?", "refund please", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dim"] == 384 and out["model"]
    assert len(out["vectors"]) == 2
    for vector in out["vectors"]:
        assert len(vector) == 384
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-4)


def test_embed_human_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", "reset my password", "I forgot my password"]) == 0
    out = capsys.readouterr().out
    assert "2 text(s) -> 384-dim" in out
    assert "cos to [0] = 1.0000" in out


def test_embed_bad_model_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", "hi", "--model", str(tmp_path / "missing")]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err

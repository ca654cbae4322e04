"""`supportbot generate` end to end on a tiny GGUF (SUPPORTBOT_MODEL points at it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.cli import main
from tests.engine.tiny_llama import hf_config, hf_model, write_gguf


@pytest.fixture
def tiny_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_gguf(tmp_path / "tiny.gguf", hf_model(hf_config(vocab_size=280), seed=2))
    monkeypatch.setenv("SUPPORTBOT_MODEL", str(path))
    return path


def test_generate_json(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", "--prompt", "the thin", "--system", "be brief", "--max-tokens", "5",
                 "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"text", "token_ids", "logprobs", "finish_reason"}
    assert 1 <= len(out["token_ids"]) <= 5 and len(out["logprobs"]) == len(out["token_ids"])
    assert all(lp <= 0 for lp in out["logprobs"])


def test_generate_text_is_greedy_by_default(tiny_model: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--prompt", "hi", "--max-tokens", "4"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", "--prompt", "hi", "--max-tokens", "4"]) == 0
    assert capsys.readouterr().out == first


def test_generate_reports_load_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"nope")
    assert main(["generate", "--prompt", "hi", "--model", str(bad)]) == 1
    assert str(bad) in capsys.readouterr().err

"""`supportbot kb index | search` and `supportbot eval` end to end on a copy of the sample KB."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from adapters.cli import main

KB_DIR = Path(__file__).resolve().parent.parent / "examples" / "kb"


@pytest.mark.slow
def test_index_search_reindex_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUPPORTBOT_REDIS_URL", raising=False)
    kb = tmp_path / "kb"
    shutil.copytree(KB_DIR, kb)
    (kb / "broken.csv").write_text("question,answer\n,no question here\n", encoding="utf-8")
    index = ["--kb", str(kb), "--index-dir", str(tmp_path / "idx")]

    assert main(["kb", "index", *index]) == 0
    err = capsys.readouterr().err
    assert "re-embedded 24 article(s)" in err and "broken.csv:2" in err
    assert list((tmp_path / "idx").glob("index-*.npz"))

    article = kb / "export-data.md"
    article.write_text(article.read_text(encoding="utf-8") + "\nAlso available as JSON.\n",
                       encoding="utf-8")
    assert main(["kb", "index", *index]) == 0
    err = capsys.readouterr().err
    assert "re-embedded 1 article(s)" in err and "23 unchanged" in err  # only the edit

    assert main(["kb", "search", *index, "I forgot my password", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["confidence", "dense", "votes", "lexical", "article"]
    assert len(lines) == 4 and "reset-password:" in lines[1]

    data = tmp_path / "eval.jsonl"
    data.write_text('{"text": "how do I reset my password", "expected": "reset-password"}\n'
                    '{"text": "tell me a joke about penguins", "expected": null}\n'
                    "oops\n", encoding="utf-8")
    assert main(["eval", *index, "--data", str(data), "--json", "--threshold", "0.5"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["in_scope_accuracy"] == 1.0 and result["oos_recall"] == 1.0
    assert result["wrong_answer_rate"] == 0.0 and result["coverage"] == 0.5
    assert result["threshold"] == 0.5 and result["skipped_lines"] == 1
    assert "eval.jsonl:3" in captured.err

    png = tmp_path / "sweep.png"
    assert main(["eval", *index, "--data", str(data), "--sweep", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "threshold meeting wrong-answer rate <= 2.00%" in out and png.is_file()


def test_eval_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--kb", str(KB_DIR), "--data", str(tmp_path / "none.jsonl")]) == 2
    assert "data file not found" in capsys.readouterr().err
    data = tmp_path / "e.jsonl"
    data.write_text('{"text": "x", "expected": null}\n', encoding="utf-8")
    assert main(["eval", "--kb", str(KB_DIR), "--data", str(data), "--threshold", "2"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err

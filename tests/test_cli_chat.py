"""`supportbot chat --script` end to end, as a user runs it (a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "adapters.cli", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_chat_script_answers_with_citations_and_hands_off(tmp_path: Path) -> None:
    script = tmp_path / "s.txt"
    script.write_text("# comment\nHow do I reset my password?\n\nwhat is the meaning of life\n")
    result = run_cli("chat", "--script", str(script))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "customer> How do I reset my password?" in out
    assert "[source: Reset your password <https://help.tallyhub.example/reset-password>]" in out
    assert "a person from our support team" in out
    assert "# comment" not in out


def test_demo_script_runs() -> None:
    result = run_cli("chat", "--script", "examples/demo.txt")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("[source:") >= 3
    assert "person" in result.stdout


def test_missing_script_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("chat", "--script", str(tmp_path / "nope.txt"))
    assert result.returncode == 2
    assert "script not found" in result.stderr


def test_invalid_setting_is_named() -> None:
    result = run_cli("chat", "--script", "examples/demo.txt",
                     env={"SUPPORTBOT_ANSWER_THRESHOLD": "7"})
    assert result.returncode == 2
    assert "SUPPORTBOT_ANSWER_THRESHOLD" in result.stderr

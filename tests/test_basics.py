"""Settings, redaction, knowledge loading and BM25."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.bm25 import BM25Index, tokenize
from bot.knowledge import load_markdown_dir, parse_article
from bot.models import ConversationKey
from bot.redact import redact
from bot.settings import SettingsError, load_settings

KB_DIR = Path(__file__).resolve().parent.parent / "examples" / "kb"


def test_settings_from_env_and_errors_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTBOT_SUPPORT_CHANNELS", "C1, C2")
    monkeypatch.setenv("SUPPORTBOT_REDIS_URL", "redis://localhost:6379/0")
    s = load_settings()
    assert s.support_channels == ["C1", "C2"] and s.redis_url.endswith("/0")
    monkeypatch.setenv("SUPPORTBOT_RATE_LIMIT", "zero")
    with pytest.raises(SettingsError, match="SUPPORTBOT_RATE_LIMIT"):
        load_settings()
    monkeypatch.setenv("SUPPORTBOT_RATE_LIMIT", "5")
    monkeypatch.setenv("SUPPORTBOT_REDIS_URL", "localhost:6379")
    with pytest.raises(SettingsError, match="redis_url"):
        load_settings()


def test_settings_from_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "sb.toml"
    cfg.write_text('agent_channel = "C-AGENTS"\nanswer_threshold = 0.7\n')
    monkeypatch.setenv("SUPPORTBOT_CONFIG", str(cfg))
    s = load_settings()
    assert s.agent_channel == "C-AGENTS" and s.answer_threshold == 0.7
    monkeypatch.setenv("SUPPORTBOT_ANSWER_THRESHOLD", "0.6")  # environment wins over the file
    assert load_settings().answer_threshold == 0.6
    monkeypatch.setenv("SUPPORTBOT_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsError, match="SUPPORTBOT_CONFIG"):
        load_settings()


@pytest.mark.parametrize(("text", "expected"), [
    ("mail me at jane.doe+x@example.co.uk please", "mail me at [email] please"),
    ("card 4111 1111 1111 1111 ok", "card [card] ok"),
    ("order 1234 5678 9012 3456 is late", "order 1234 5678 9012 3456 is late"),  # fails Luhn
    ("call +44 20 7946 0958 today", "call [phone] today"),
    ("IBAN GB82 WEST 1234 5698 7654 32", "IBAN [iban]"),
    ("version 2.13.0 released 2024-05-01", "version 2.13.0 released 2024-05-01"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_sample_kb_loads_at_least_20_articles_with_questions() -> None:
    kb = load_markdown_dir(KB_DIR)
    assert kb.problems == []
    assert len(kb.articles) >= 20
    assert all(a.questions and a.url for a in kb.articles)


def test_malformed_articles_reported_by_file_and_line_rest_loads(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text("---\ntitle: Good\n---\nBody text.\n")
    (tmp_path / "bad_yaml.md").write_text("---\ntitle: Bad\nquestions: [unclosed\n---\nBody\n")
    (tmp_path / "unclosed.md").write_text("---\ntitle: x\nBody\n")
    (tmp_path / "empty.md").write_text("---\ntitle: Empty\n---\n\n")
    (tmp_path / "esc.md").write_text("---\nescalate: sometimes\n---\nBody\n")
    kb = load_markdown_dir(tmp_path)
    assert [a.id for a in kb.articles] == ["good"]
    problems = {Path(p.path).name: p for p in kb.problems}
    assert set(problems) == {"bad_yaml.md", "unclosed.md", "empty.md", "esc.md"}
    assert problems["bad_yaml.md"].line >= 3
    assert problems["empty.md"].line == 4
    assert "escalate" in problems["esc.md"].message


def test_article_defaults() -> None:
    a = parse_article("# Heading here\nSome text", "file-id")
    assert (a.id, a.title, a.escalate) == ("file-id", "Heading here", "never")


def test_bm25_prefers_matching_field_and_reports_coverage() -> None:
    idx = BM25Index([("Reset your password", "I forgot my password"),
                     ("Plans and pricing", "How much does it cost?")])
    [top, *_] = idx.search("forgot password")
    assert top.doc == 0 and top.coverage == pytest.approx(1.0)
    assert idx.search("the and of") == []
    assert tokenize("Invoices invoicing") == ["invoic", "invoic"]  # one stem for both


def test_conversation_key_round_trip_and_validation() -> None:
    key = ConversationKey("discord", "G1", "C1", "T1")
    assert ConversationKey.parse(key.id) == key
    with pytest.raises(ValueError):
        ConversationKey("slack", "T:1", "C", "t")

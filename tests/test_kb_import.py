"""Knowledge imports: CSV and JSONL rows grouped into articles; bad rows reported, rest kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.kb_import import load_csv, load_jsonl, load_knowledge
from bot.kb_index import chunk_text


def test_csv_groups_rows_into_articles(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text(
        "question,answer,id,title\n"
        "How do I reset my password?,Use the reset link.,reset,Reset password\n"
        "I forgot my password,Use the reset link.,reset,\n"
        "Where is my invoice?,Invoices are under Billing.,,\n"
        "Can I get my invoice?,Invoices are under Billing.,,\n", encoding="utf-8")
    kb = load_csv(path)
    assert kb.problems == []
    by_id = kb.by_id()
    assert set(by_id) == {"reset", "where-is-my-invoice"}
    assert by_id["reset"].questions == ("How do I reset my password?", "I forgot my password")
    assert by_id["reset"].title == "Reset password"
    # No id: rows with the same answer are one article, titled by its first question.
    invoice = by_id["where-is-my-invoice"]
    assert invoice.questions == ("Where is my invoice?", "Can I get my invoice?")
    assert invoice.body == "Invoices are under Billing."


def test_csv_bad_rows_reported_by_line_rest_loads(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text(
        "question,answer\n"
        "good one?,Yes.\n"
        ",an answer without question\n"
        "too,many,cells\n"
        "another good one?,Also yes.\n", encoding="utf-8")
    kb = load_csv(path)
    assert [a.questions[0] for a in kb.articles] == ["good one?", "another good one?"]
    assert [(p.line, "question" in p.message or "cells" in p.message) for p in kb.problems] \
        == [(3, True), (4, True)]
    assert all(p.path == str(path) for p in kb.problems)


def test_csv_without_required_columns_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("q,a\nx,y\n", encoding="utf-8")
    kb = load_csv(path)
    assert kb.articles == [] and kb.problems[0].line == 1
    assert "question" in kb.problems[0].message


def test_jsonl_import_and_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    path.write_text(
        '{"question": "How do refunds work?", "answer": "Within 14 days.", "id": "refunds"}\n'
        "{not json\n"
        '["a list"]\n'
        '{"question": "Refund please", "answer": "Within 14 days.", "id": "refunds"}\n'
        '{"question": "Other?", "answer": "Different.", "id": "refunds"}\n'
        '{"question": "Plans?", "answer": "Three plans.", "title": "Plans", '
        '"url": "https://x.test/plans"}\n', encoding="utf-8")
    kb = load_jsonl(path)
    by_id = kb.by_id()
    assert by_id["refunds"].questions == ("How do refunds work?", "Refund please")
    assert by_id["plans"].url == "https://x.test/plans"
    assert [p.line for p in kb.problems] == [2, 3, 5]  # bad JSON, not an object, conflict
    assert "different answer" in kb.problems[2].message


def test_directory_loads_markdown_csv_and_jsonl_and_reports_duplicates(tmp_path: Path) -> None:
    (tmp_path / "reset.md").write_text("---\nid: reset\ntitle: Reset\n---\nClick reset.\n",
                                       encoding="utf-8")
    (tmp_path / "broken.md").write_text("---\ntitle: [unclosed\n---\nBody\n", encoding="utf-8")
    (tmp_path / "more.csv").write_text("question,answer,id\nreset?,Other text.,reset\n"
                                       "plans?,Three.,plans\n", encoding="utf-8")
    kb = load_knowledge(tmp_path)
    assert sorted(a.id for a in kb.articles) == ["plans", "reset"]
    assert kb.by_id()["reset"].body == "Click reset."  # the first definition wins
    messages = [str(p) for p in kb.problems]
    assert any("broken.md" in m for m in messages)
    assert any("duplicate id 'reset'" in m for m in messages)


def test_missing_or_unknown_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_knowledge(tmp_path / "nope")
    other = tmp_path / "kb.txt"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown knowledge-base file type"):
        load_knowledge(other)


def test_long_articles_are_chunked_on_paragraphs_and_sentences() -> None:
    para = " ".join(f"Sentence number {i} explains one more step." for i in range(40))
    body = "Short intro.\n\n" + para + "\n\nClosing words."
    chunks = chunk_text(body, max_chars=300)
    assert len(chunks) > 3
    assert all(len(c) <= 300 for c in chunks)
    # Nothing is lost or reordered: every sentence appears once, in order.
    joined = " ".join(chunks).replace("\n\n", " ")
    positions = [joined.index(f"Sentence number {i} ") for i in range(40)]
    assert positions == sorted(positions)
    assert chunks[0].startswith("Short intro.") and chunks[-1].endswith("Closing words.")
    assert chunk_text("One paragraph.", max_chars=300) == ["One paragraph."]

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.render import split_text


@given(st.text(max_size=3000), st.integers(min_value=1, max_value=500))
def test_split_respects_limit_and_keeps_words(text: str, limit: int) -> None:
    chunks = split_text(text, limit)
    assert all(len(c) <= limit for c in chunks)
    assert "".join(chunks).split() == text.split() or "".join(chunks).replace(" ", "") == \
        "".join(text.split())


def test_split_prefers_boundaries() -> None:
    assert split_text("aaa bbb ccc", 7) == ["aaa bbb", "ccc"]
    assert split_text("para one\n\npara two", 12) == ["para one", "para two"]
    assert split_text("x" * 10, 4) == ["xxxx", "xxxx", "xx"]
    assert split_text("", 5) == [""]

"""Streamed text: stop strings split over tokens never leak, UTF-8 is never cut in half."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.stop import IncrementalDetokenizer, StopMatcher, TextStream


def byte_decode(pieces: list[bytes]) -> Callable[[Sequence[int]], str]:
    def decode(ids: Sequence[int]) -> str:
        return b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace")
    return decode


def run(pieces: list[bytes], stops: Sequence[str]) -> tuple[list[str], bool]:
    stream = TextStream(byte_decode(pieces), stops)
    out: list[str] = []
    for i in range(len(pieces)):
        text, stopped = stream.push(i)
        out.append(text)
        if stopped:
            return out, True
    text, stopped = stream.finish()
    out.append(text)
    return out, stopped


def test_stop_string_split_over_tokens_is_held_back_then_dropped() -> None:
    pieces = [b"Sure, open Settings.", b"\nUs", b"er", b": more"]
    out, stopped = run(pieces, ["\nUser:"])
    assert stopped
    assert "".join(out) == "Sure, open Settings."
    assert all("\n" not in piece and "Us" not in piece for piece in out)


def test_held_text_is_released_when_it_turns_out_not_to_be_a_stop() -> None:
    pieces = [b"Hello", b"\nUs", b"eful tip"]
    out, stopped = run(pieces, ["\nUser:"])
    assert not stopped
    assert out[1] == ""  # "\nUs" might still become "\nUser:"
    assert "".join(out) == "Hello\nUseful tip"


def test_held_prefix_released_at_end_of_generation() -> None:
    out, stopped = run([b"abc", b"\nUse"], ["\nUser:"])
    assert not stopped and "".join(out) == "abc\nUse"


def test_earliest_of_several_stops_wins() -> None:
    out, stopped = run([b"one two ", b"three four"], ["four", "two"])
    assert stopped and "".join(out) == "one "


def test_multibyte_character_split_over_tokens_is_emitted_whole() -> None:
    euro = "€".encode()
    pieces = [b"cost: ", euro[:1], euro[1:2], euro[2:], b" 5"]
    detok = IncrementalDetokenizer(byte_decode(pieces))
    out = [detok.push(i) for i in range(len(pieces))] + [detok.flush()]
    assert out[1] == "" and out[2] == "" and out[3] == "€"
    assert "".join(out) == "cost: € 5"


def test_matcher_without_stops_passes_text_through() -> None:
    matcher = StopMatcher([])
    assert matcher.push("abc") == ("abc", False)
    assert matcher.flush() == ""

"""Turn generated token ids into text that is safe to stream.

Two hazards, one module:
  * A token may end halfway through a UTF-8 character, or a tokenizer may spell a piece
    differently depending on its left neighbour (SentencePiece's leading space). So text is
    decoded over a short window of tokens and only the stable part is released.
  * A stop string may arrive split over several tokens ("\\nUs", "er:"). Text that could still
    be the beginning of a stop string is held back until it either completes one (dropped,
    generation ends) or turns out to be ordinary text (released). A client never sees a
    partial stop string, not even for one chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]


class IncrementalDetokenizer:
    """Feed token ids one at a time, get back the newly stable text each time."""

    def __init__(self, decode: Decode) -> None:
        self._decode = decode
        self._ids: list[int] = []
        # [prefix, read) is context already emitted, kept so a word piece decodes as it does
        # mid-sentence; [read, end) is not emitted yet.
        self._prefix = 0
        self._read = 0

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        return self._release(final=False)

    def flush(self) -> str:
        """Whatever is left at the end of the generation, even an incomplete character."""
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        if self._read == len(self._ids):
            return ""
        before = self._decode(self._ids[self._prefix:self._read])
        after = self._decode(self._ids[self._prefix:])
        # U+FFFD at the end means the last token stopped inside a multi-byte character.
        if len(after) > len(before) and (final or not after.endswith("\ufffd")):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before):]
        return ""


class StopMatcher:
    """Finds stop strings in streamed text without ever releasing part of one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to release now, whether a stop string was completed)."""
        buf = self._held + text
        if not self._stops:
            self._held = ""
            return buf, False
        hits = [i for i in (buf.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._held = ""
            return buf[: min(hits)], True
        keep = self._partial_suffix(buf)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        """The held-back text, once the generation ended without completing a stop string."""
        held, self._held = self._held, ""
        return held

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest suffix of ``buf`` that is a proper prefix of a stop string."""
        best = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(buf)), best, -1):
                if buf.endswith(stop[:k]):
                    best = k
                    break
        return best


class TextStream:
    """Detokenizer and stop matcher together: token in, (safe text, stopped) out."""

    def __init__(self, decode: Decode, stops: Sequence[str]) -> None:
        self._detok = IncrementalDetokenizer(decode)
        self._stop = StopMatcher(stops)

    def push(self, token_id: int) -> tuple[str, bool]:
        return self._stop.push(self._detok.push(token_id))

    def finish(self) -> tuple[str, bool]:
        """Text still pending at the end (the stop check runs over it one last time)."""
        text, stopped = self._stop.push(self._detok.flush())
        return (text, True) if stopped else (text + self._stop.flush(), False)

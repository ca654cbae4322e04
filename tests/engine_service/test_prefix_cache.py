"""Prefix-cache lineage: which sequences hold bit-identical copies of which positions."""

from __future__ import annotations

from engine.prefix_cache import PrefixCache, Restored


def test_entries_inherit_the_origin_of_the_part_they_restored() -> None:
    copies: list[tuple[int, int, int]] = []
    cache = PrefixCache([10, 11, 12], lambda src, dst, n: copies.append((src, dst, n)),
                        min_match=4)
    system = list(range(100, 120))  # a 20-token shared prompt
    first = cache.insert([*system, 1, 2, 3], src_slot=0)  # computed from scratch
    assert first is not None and first.origin is not None and first.origin_len == 23

    # a second question restores the system prompt from it, then is inserted itself
    second_prompt = [*system, 7, 8, 9, 10]
    got = cache.restore(second_prompt, dst_slot=1)
    assert got == Restored(20, first.origin, 20) and copies[-1][1:] == (1, 20)
    second = cache.insert(second_prompt, src_slot=1, restored=got)
    assert second == Restored(24, first.origin, 20)  # same origin as far as it was copied

    # the same question again: the longest match is the second entry (23 positions), and
    # only its first 20 are known to be identical to the first prompt's lineage
    again = cache.restore([*system, 7, 8, 9, 10, 11], dst_slot=2)
    assert again == Restored(24, first.origin, 20)

    # an unrelated prompt starts a new origin; a miss copies nothing
    assert cache.restore(list(range(500, 530)), dst_slot=3) == Restored()
    other = cache.insert(list(range(500, 530)), src_slot=3)
    assert other is not None and other.origin not in (None, first.origin)

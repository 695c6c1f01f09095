"""Block hashing and the prefix-cache LRU."""

from __future__ import annotations

import pytest

from inferlane.sim.prefix_cache import PrefixCache, block_hashes
from inferlane.sim.tokens import Prompt

BLOCK_CHARS = 16 * 4


def hashes_of(text: str, seed: str = "m") -> tuple[int, ...]:
    return block_hashes(seed, Prompt.from_text(text).block_payloads(16))


def test_only_full_blocks_are_hashed() -> None:
    assert len(hashes_of("x" * (BLOCK_CHARS * 3 - 4))) == 2  # 47 tokens
    assert len(hashes_of("x" * BLOCK_CHARS * 3)) == 3


def test_chain_shares_hashes_up_to_the_first_difference() -> None:
    base = "".join(chr(97 + i) * BLOCK_CHARS for i in range(4))
    changed = base[:BLOCK_CHARS * 2] + "Z" + base[BLOCK_CHARS * 2 + 1:]
    a, b = hashes_of(base), hashes_of(changed)
    assert a[:2] == b[:2]
    assert a[2] != b[2]
    assert a[3] != b[3]


def test_seed_separates_models() -> None:
    text = "y" * BLOCK_CHARS * 2
    assert set(hashes_of(text, "model-a")).isdisjoint(hashes_of(text, "model-b"))


def test_token_id_prompts_hash_by_ids() -> None:
    ids = tuple(range(40))
    first = block_hashes("m", Prompt.from_token_ids(ids).block_payloads(16))
    other = block_hashes("m", Prompt.from_token_ids((*ids[:16], 999, *ids[17:]))
                         .block_payloads(16))
    assert len(first) == 2
    assert first[0] == other[0]
    assert first[1] != other[1]


@pytest.mark.parametrize(
    ("cached", "query", "expected"),
    [
        ((1, 2, 3), (1, 2, 3, 4), 3),
        ((1, 2, 3), (1, 9, 3), 1),
        ((2, 3), (1, 2, 3), 0),  # a chain whose head is gone matches nothing
        ((), (1,), 0),
        ((1, 2), (), 0),
    ],
)
def test_longest_prefix_match(cached: tuple[int, ...], query: tuple[int, ...],
                              expected: int) -> None:
    cache = PrefixCache(16)
    cache.insert(cached)
    assert cache.match(query) == expected


def test_lru_evicts_the_tail_of_the_oldest_chain_first() -> None:
    cache = PrefixCache(4)
    cache.insert((1, 2, 3))
    cache.insert((10, 11))
    # Capacity 4: one block of the first chain goes, and it is the tail (3), not the head.
    assert len(cache) == 4
    assert cache.match((1, 2, 3)) == 2
    assert cache.match((10, 11)) == 2


def test_touch_protects_a_chain() -> None:
    cache = PrefixCache(4)
    cache.insert((1, 2))
    cache.insert((10, 11))
    cache.touch((1, 2))
    cache.insert((20,))
    assert cache.match((1, 2)) == 2
    assert cache.match((10, 11)) == 1


def test_chain_longer_than_capacity_keeps_its_head() -> None:
    cache = PrefixCache(2)
    cache.insert((1, 2, 3, 4))
    assert cache.match((1, 2, 3, 4)) == 2


def test_zero_capacity_disables() -> None:
    cache = PrefixCache(0)
    cache.insert((1, 2))
    assert len(cache) == 0
    assert cache.match((1,)) == 0
    with pytest.raises(ValueError, match="capacity"):
        PrefixCache(-1)

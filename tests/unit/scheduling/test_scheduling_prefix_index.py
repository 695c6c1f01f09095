"""The approximate prefix index: chained hashes, longest-prefix match, bounded memory."""

from __future__ import annotations

import random

import pytest

from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.plugins.scorer.prefix_cache import PrefixCacheScorer
from inferlane.scheduling.prefix_index import PrefixIndex, chain_hashes
from inferlane.scheduling.types import EndpointState, ServerMetrics

BLOCK = 64  # 16 tokens * 4 characters


def endpoint(i: int) -> Endpoint:
    return Endpoint(f"default/s{i}", f"10.0.0.{i}", 8000)


def blocks(*letters: str) -> str:
    """A prompt made of whole blocks, one letter repeated per block."""
    return "".join(letter * BLOCK for letter in letters)


def state(i: int, *, block_size: int | None = None,
          num_blocks: int | None = None) -> EndpointState:
    metrics = (ServerMetrics(block_size=block_size, num_blocks=num_blocks)
               if block_size or num_blocks else None)
    return EndpointState(endpoint(i), metrics)


def request(prompt: str, model: str = "m") -> PickRequest:
    return PickRequest(request_id="r", model=model, prompt=prompt)


def test_same_prefix_same_chain_and_divergence_changes_every_later_hash() -> None:
    a = chain_hashes("m", blocks("a", "b", "c", "d"), BLOCK, 256)
    b = chain_hashes("m", blocks("a", "b", "x", "d"), BLOCK, 256)
    assert len(a) == 4
    assert a == chain_hashes("m", blocks("a", "b", "c", "d"), BLOCK, 256)
    assert a[:2] == b[:2]
    assert a[2] != b[2]
    assert a[3] != b[3]  # same block text, different history
    assert len(set(a)) == 4


def test_the_model_name_seeds_the_chain() -> None:
    a = chain_hashes("llama", blocks("a", "b"), BLOCK, 256)
    b = chain_hashes("qwen", blocks("a", "b"), BLOCK, 256)
    assert not set(a) & set(b)


@pytest.mark.parametrize(
    ("chars", "max_blocks", "count"),
    [(0, 256, 0), (63, 256, 0), (64, 256, 1), (130, 256, 2), (64 * 300, 256, 256),
     (64 * 10, 4, 4)],
)
def test_only_whole_blocks_count_up_to_the_cap(chars: int, max_blocks: int, count: int) -> None:
    assert len(chain_hashes("m", "z" * chars, BLOCK, max_blocks)) == count


def test_longest_prefix_match_scores_matched_over_total_blocks() -> None:
    index = PrefixIndex()
    scorer = PrefixCacheScorer(index)
    fleet = [state(0), state(1), state(2)]
    scorer.picked(request(blocks("a", "b", "c", "d", "e")), fleet[0])
    scorer.picked(request(blocks("a", "b")), fleet[1])
    probe = request(blocks("a", "b", "c", "x", "y"))
    # s0 holds a,b,c (3 of 5), s1 holds a,b (2 of 5), s2 nothing
    assert scorer.score(probe, fleet) == pytest.approx([0.6, 0.4, 0.0])
    assert scorer.score(request(blocks("q", "a", "b")), fleet) == [0.0, 0.0, 0.0]
    assert scorer.score(request("short"), fleet) == [0.0, 0.0, 0.0]  # no whole block
    assert scorer.score(request(""), fleet) == [0.0, 0.0, 0.0]
    # another model never matches
    assert scorer.score(request(blocks("a", "b", "c"), model="other"), fleet) == [0.0] * 3


def test_binary_search_agrees_with_a_linear_scan_under_eviction() -> None:
    rng = random.Random(4)
    index = PrefixIndex(capacity=40)
    target = endpoint(0)
    stems = ["".join(rng.choice("abc") for _ in range(8)) for _ in range(30)]
    for _ in range(3000):
        prompt = blocks(*rng.choice(stems)[: rng.randint(1, 8)])
        hashes = index.hashes("m", prompt, 16)
        if rng.random() < 0.5:
            index.record(target, hashes)
        generations = index._blocks.get(target)
        held = [generations is not None and (h in generations.young or h in generations.old)
                for h in hashes]
        # prefix-closed: a present block implies every block before it is present ...
        assert held == sorted(held, reverse=True)
        # ... so the binary search finds the same prefix as a linear scan
        assert index.match(target, hashes) == sum(held)


def test_memory_never_grows_beyond_the_configured_bounds() -> None:
    rng = random.Random(1)
    index = PrefixIndex(capacity=64, max_endpoints=4)
    for i in range(2000):
        prompt = "".join(rng.choice("abcdefgh") for _ in range(BLOCK * 10))
        index.record(endpoint(i % 6), index.hashes("m", prompt, 16))
        assert index.size(endpoint(i % 6)) <= 64
    assert len(index.endpoints()) == 4
    # the four most recently picked are kept, least recent first
    assert index.endpoints() == tuple(endpoint(i % 6) for i in range(1996, 2000))
    assert index.total_entries() <= 4 * 64


def test_a_chain_longer_than_half_the_capacity_keeps_its_head() -> None:
    index = PrefixIndex(capacity=8)
    hashes = index.hashes("m", blocks(*"abcdefghij"), 16)
    index.record(endpoint(0), hashes)
    assert index.size(endpoint(0)) == 4
    assert index.match(endpoint(0), hashes) == 4


def test_two_generations_drop_the_oldest_chains_first() -> None:
    index = PrefixIndex(capacity=8)  # generations of 4 blocks
    ep = endpoint(0)
    first, second, third = (index.hashes("m", blocks(*f"{c}{c}{c}{c}".upper() + c), 16)[:4]
                            for c in "xyz")
    index.record(ep, first)
    index.record(ep, second)  # young is full: first becomes old
    assert (index.match(ep, first), index.match(ep, second)) == (4, 4)
    index.record(ep, first)  # refreshed into the young generation (second becomes old)
    index.record(ep, third)  # second is dropped, first survives
    assert (index.match(ep, first), index.match(ep, second), index.match(ep, third)) == (4, 0, 4)


def test_recording_a_chain_already_young_changes_nothing() -> None:
    index = PrefixIndex(capacity=8)
    hashes = index.hashes("m", blocks("a", "b", "c"), 16)
    index.record(endpoint(0), hashes)
    generations = index._blocks[endpoint(0)]
    young = generations.young
    index.record(endpoint(0), hashes)
    assert generations.young is young
    assert len(young) == 3


def test_auto_tune_uses_the_servers_block_size_and_cache_size() -> None:
    index = PrefixIndex(capacity=100, max_capacity=1000)
    tuned = state(0, block_size=32, num_blocks=5000)
    assert (index.block_tokens_for(tuned), index.capacity_for(tuned)) == (32, 1000)
    assert (index.block_tokens_for(state(1)), index.capacity_for(state(1))) == (16, 100)
    prompt = blocks("a", "b", "c", "d")  # 256 characters: 2 blocks of 32 tokens * 4 chars
    req = request(prompt)
    index.record_request(req, tuned)
    assert index.size(tuned.endpoint) == 2
    assert index.match_fractions(req, [tuned, state(1)]) == [1.0, 0.0]
    assert index.matched_tokens(req, [tuned]) == [64]
    fixed = PrefixIndex(auto_tune=False)
    assert fixed.block_tokens_for(tuned) == 16


def test_hashes_are_memoised_for_the_last_prompt_only() -> None:
    index = PrefixIndex()
    prompt = blocks("a", "b")
    first = index.hashes("m", prompt, 16)
    assert index.hashes("m", prompt, 16) is first
    assert index.hashes("m", "".join(["a" * BLOCK, "b" * BLOCK]), 16) is first  # equal text
    assert index.hashes("n", prompt, 16) != first
    assert index.hashes("m", blocks("c"), 16) != first


def test_equal_endpoints_share_entries_and_new_ones_are_seen() -> None:
    index = PrefixIndex()
    req = request(blocks("a", "b"))
    twin = EndpointState(Endpoint("default/s0", "10.0.0.0", 8000))  # equal, not identical
    assert index.match_fractions(req, [twin]) == [0.0]  # caches "nothing for s0"
    index.record_request(req, state(0))
    assert index.match_fractions(req, [twin, state(0)]) == [1.0, 1.0]
    index.forget(endpoint(0))
    assert index.match_fractions(req, [twin]) == [0.0]


@pytest.mark.parametrize("field", ["block_tokens", "max_blocks", "capacity", "max_endpoints"])
def test_sizes_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be >= 1"):
        PrefixIndex(**{field: 0})  # type: ignore[arg-type]

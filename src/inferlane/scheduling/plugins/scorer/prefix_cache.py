"""``prefix-cache-scorer``: prefer endpoints that probably hold the prompt's prefix in KV cache.

``score_i = matched_blocks_i / total_blocks`` from the approximate prefix index
(``scheduling.prefix_index``: 16-token * 4-char blocks, chained hashes seeded with the model,
longest cached prefix per endpoint); 0 for every candidate when the prompt is shorter than one
block. After the pick the request's blocks are recorded for the chosen endpoint (PostPick).

Parameters (upstream names): ``blockSizeTokens`` (16), ``blockSize`` (legacy, in characters;
used when ``blockSizeTokens`` is not set), ``maxPrefixBlocksToMatch`` (256),
``lruCapacityPerServer`` (4096 blocks), ``autoTune`` (true: block size and capacity from the
server's ``cache_config_info`` when reported). Ours: ``maxLruCapacityPerServer`` (65536, the
ceiling on any endpoint's LRU) and ``maxServers`` (4096 endpoints tracked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.prefix_index import (
    DEFAULT_BLOCK_TOKENS,
    DEFAULT_CAPACITY,
    DEFAULT_CHARS_PER_TOKEN,
    DEFAULT_MAX_BLOCKS,
    DEFAULT_MAX_CAPACITY,
    DEFAULT_MAX_ENDPOINTS,
    PrefixIndex,
)
from inferlane.scheduling.types import EndpointState

# The type name; the gateway reads the chosen endpoint's prefix match under it.
PREFIX_CACHE_SCORER = "prefix-cache-scorer"


class PrefixCacheScorer:
    __slots__ = ("prefix_index",)
    SCORES_IN_RANGE = True  # see framework.profile

    def __init__(self, prefix_index: PrefixIndex | None = None) -> None:
        self.prefix_index = prefix_index or PrefixIndex()

    def score(self, request: PickRequest, candidates: Sequence[EndpointState]) -> list[float]:
        return self.prefix_index.match_fractions(request, candidates)

    def picked(self, request: PickRequest, state: EndpointState) -> None:
        self.prefix_index.record_request(request, state)


def index_from_params(p: Params) -> PrefixIndex:
    """The prefix index configured by the parameters above (shared with other plugins)."""
    block_tokens = p.optional_integer("blockSizeTokens", minimum=1)
    legacy_chars = p.optional_integer("blockSize", minimum=1)
    if block_tokens is None:
        block_tokens = (max(1, round(legacy_chars / DEFAULT_CHARS_PER_TOKEN))
                        if legacy_chars is not None else DEFAULT_BLOCK_TOKENS)
    return PrefixIndex(
        block_tokens=block_tokens,
        max_blocks=p.integer("maxPrefixBlocksToMatch", DEFAULT_MAX_BLOCKS, minimum=1),
        capacity=p.integer("lruCapacityPerServer", DEFAULT_CAPACITY, minimum=1),
        max_capacity=p.integer("maxLruCapacityPerServer", DEFAULT_MAX_CAPACITY, minimum=1),
        max_endpoints=p.integer("maxServers", DEFAULT_MAX_ENDPOINTS, minimum=1),
        auto_tune=p.boolean("autoTune", True),
    )


def factory(name: str, params: Mapping[str, Any]) -> PrefixCacheScorer:
    p = Params(name or PREFIX_CACHE_SCORER, params)
    plugin = PrefixCacheScorer(index_from_params(p))
    p.done()
    return plugin

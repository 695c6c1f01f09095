"""Approximate prefix-cache index: which endpoint probably still holds this prompt's KV blocks.

The gateway cannot see a model server's prefix cache, so it remembers what it sent where
(upstream GIE/llm-d "approximate prefix cache", REFERENCE §2):

* **Blocks.** The prompt text is cut into blocks of ``block_tokens * chars_per_token``
  characters (16 * 4 = 64 by default; with ``auto_tune`` the endpoint's reported KV block size
  replaces 16). Only whole blocks count, at most ``max_blocks`` (256) of them.
* **Chained hashes.** ``h0 = hash((SEED, model))``, ``h_i = hash((h_{i-1}, block_i))``: a block's
  hash covers every character before it, so equal hashes mean equal prefixes, and the model
  name keeps different models apart. The hash is Python's built-in ``hash`` (SipHash on str,
  64-bit): about 0.17 µs per block here, against 0.5 µs for ``blake2b(digest_size=8)`` and 0.3
  µs for ``zlib.crc32`` (32 bits only). It is salted per process (``PYTHONHASHSEED``), which is
  fine for an in-process index; sharing an index between replicas would need a stable hash.
* **One approximate LRU per endpoint** of block hashes, holding at most ``capacity`` blocks (or,
  with ``auto_tune``, the endpoint's reported ``num_blocks`` -- the size of its real KV cache),
  never above ``max_capacity``. It is a two-generation LRU: blocks recorded since the last
  rotation (*young*) and those of the generation before (*old*), each at most ``capacity / 2``;
  when recording would overflow *young*, *old* is dropped and *young* becomes *old*. It keeps
  between about ``capacity / 2`` and ``capacity`` of the most recently recorded blocks, at O(1)
  per block with C-level dict updates (a strict LRU's per-block ``move_to_end`` and eviction
  cost about three times more per pick here). At most ``max_endpoints`` endpoints are tracked (least
  recently picked dropped first), so memory is bounded by ``max_endpoints * max_capacity``
  entries whatever the traffic.
* **Record after a pick**: the request's whole chain (its first ``capacity / 2`` blocks at most)
  goes into the chosen endpoint's young generation at once (nothing to do when its last block is
  already young: that block's hash covers the whole chain). A block therefore never lives in an
  older generation than the blocks before it in its chain, and generations are dropped oldest
  first, so each endpoint's set stays prefix-closed -- if block i is present so is every block
  before it -- and ``match`` finds the longest cached prefix by binary search (O(log blocks)
  lookups per endpoint).
* **Score** = matched blocks / total blocks of the request (0 when the prompt is shorter than one
  block).

The hashes of the last prompt are memoised, so the prefix scorer, the predicted-latency scorer
and the post-pick record of one request hash the prompt once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.types import EndpointState

DEFAULT_BLOCK_TOKENS = 16
DEFAULT_CHARS_PER_TOKEN = 4
DEFAULT_MAX_BLOCKS = 256
DEFAULT_CAPACITY = 4096  # blocks per endpoint when the server does not report num_blocks
DEFAULT_MAX_CAPACITY = 65536  # ceiling on any endpoint's LRU, reported num_blocks included
DEFAULT_MAX_ENDPOINTS = 4096

_SEED = "inferlane-prefix-v1"


def chain_hashes(model: str, prompt: str, block_chars: int, max_blocks: int) -> tuple[int, ...]:
    """The chained 64-bit hashes of the whole ``block_chars``-character blocks of ``prompt``."""
    count = min(len(prompt) // block_chars, max_blocks)
    previous = hash((_SEED, model))
    return tuple([previous := hash((previous, prompt[start:start + block_chars]))
                  for start in range(0, count * block_chars, block_chars)])


class PrefixIndex:
    """Per-endpoint approximate LRUs of block hashes; see the module docstring."""

    __slots__ = ("_blocks", "_by_id", "_last_scan", "_memo", "_memo_model", "_memo_prompt",
                 "auto_tune",
                 "block_tokens", "capacity", "chars_per_token", "max_blocks", "max_capacity",
                 "max_endpoints")

    def __init__(
        self,
        *,
        block_tokens: int = DEFAULT_BLOCK_TOKENS,
        chars_per_token: int = DEFAULT_CHARS_PER_TOKEN,
        max_blocks: int = DEFAULT_MAX_BLOCKS,
        capacity: int = DEFAULT_CAPACITY,
        max_capacity: int = DEFAULT_MAX_CAPACITY,
        max_endpoints: int = DEFAULT_MAX_ENDPOINTS,
        auto_tune: bool = True,
    ) -> None:
        for label, value in (("block_tokens", block_tokens), ("chars_per_token", chars_per_token),
                             ("max_blocks", max_blocks), ("capacity", capacity),
                             ("max_capacity", max_capacity), ("max_endpoints", max_endpoints)):
            if value < 1:
                raise ValueError(f"prefix index: {label} must be >= 1, got {value}")
        self.block_tokens = block_tokens
        self.chars_per_token = chars_per_token
        self.max_blocks = max_blocks
        self.capacity = min(capacity, max_capacity)
        self.max_capacity = max_capacity
        self.max_endpoints = max_endpoints
        self.auto_tune = auto_tune
        self._blocks: OrderedDict[Endpoint, _Generations] = OrderedDict()
        self._by_id: dict[int, tuple[Endpoint, _Generations | None]] = {}
        self._memo_model = ""
        self._memo_prompt = ""
        self._memo: dict[int, tuple[int, ...]] = {}
        # The last scan, (request, states, tokens, fractions): the scorers of one profile run
        # that share this index (prefix-cache, prefill-load, predicted-latency) scan it once.
        self._last_scan: tuple[PickRequest, Sequence[EndpointState], list[float],
                               list[float]] | None = None

    # -- per-endpoint shape ----------------------------------------------------------------------

    def block_tokens_for(self, state: EndpointState) -> int:
        metrics = state.metrics
        if self.auto_tune and metrics is not None and metrics.block_size:
            return metrics.block_size
        return self.block_tokens

    def capacity_for(self, state: EndpointState) -> int:
        metrics = state.metrics
        if self.auto_tune and metrics is not None and metrics.num_blocks:
            return min(metrics.num_blocks, self.max_capacity)
        return self.capacity

    # -- hashing ---------------------------------------------------------------------------------

    def hashes(self, model: str, prompt: str, block_tokens: int) -> tuple[int, ...]:
        """The request's chained block hashes for one block size (memoised for the last prompt)."""
        if prompt is not self._memo_prompt:
            if prompt != self._memo_prompt:
                self._memo = {}
            self._memo_prompt = prompt
        if model != self._memo_model:
            self._memo = {}
            self._memo_model = model
        found = self._memo.get(block_tokens)
        if found is None:
            found = chain_hashes(model, prompt, block_tokens * self.chars_per_token,
                                 self.max_blocks)
            self._memo[block_tokens] = found
        return found

    def request_hashes(self, request: PickRequest, state: EndpointState) -> tuple[int, ...]:
        return self.hashes(request.model, request.prompt, self.block_tokens_for(state))

    # -- lookups and updates ---------------------------------------------------------------------

    def _generations(self, endpoint: Endpoint) -> _Generations | None:
        # Endpoint is a dataclass whose __hash__ runs Python code (~0.3 µs); scoring 1,000
        # endpoints per request would spend 0.3 ms on it alone. Cache by identity instead: an
        # entry holds the endpoint, so its id cannot be reused while cached, and the cache is
        # cleared whenever an endpoint gains or loses its generations.
        entry = self._by_id.get(id(endpoint))
        if entry is not None and entry[0] is endpoint:
            return entry[1]
        found = self._blocks.get(endpoint)
        if len(self._by_id) >= 4 * self.max_endpoints:
            self._by_id.clear()
        self._by_id[id(endpoint)] = (endpoint, found)
        return found

    def match(self, endpoint: Endpoint, hashes: Sequence[int]) -> int:
        """How many leading blocks of ``hashes`` the endpoint probably holds."""
        blocks = self._generations(endpoint)
        if blocks is None or not hashes:
            return 0
        return _longest_prefix(blocks.young, blocks.old, hashes)

    def match_fractions(self, request: PickRequest,
                        states: Sequence[EndpointState]) -> list[float]:
        """Per state: matched blocks / total blocks of the request (0 for no whole block)."""
        return self._scan(request, states)[1]

    def matched_tokens(self, request: PickRequest,
                       states: Sequence[EndpointState]) -> list[float]:
        """Per state: estimated prompt tokens it would not have to prefill."""
        return self._scan(request, states)[0]

    def _scan(self, request: PickRequest, states: Sequence[EndpointState]
              ) -> tuple[list[float], list[float]]:
        """(matched tokens, matched fractions) per state; memoised for the last call."""
        last = self._last_scan
        if last is not None and last[0] is request and last[1] is states:
            return last[2], last[3]
        model, prompt = request.model, request.prompt
        if not prompt:
            return [0.0] * len(states), [0.0] * len(states)
        default_tokens = self.block_tokens
        default_hashes = self.hashes(model, prompt, default_tokens)
        auto_tune = self.auto_tune
        cached = self._by_id.get
        tokens: list[float] = []
        fractions: list[float] = []
        for state in states:
            block_tokens = default_tokens
            hashes = default_hashes
            if auto_tune:
                metrics = state.metrics
                if metrics is not None and metrics.block_size \
                        and metrics.block_size != default_tokens:
                    block_tokens = metrics.block_size
                    hashes = self.hashes(model, prompt, block_tokens)
            matched = 0
            if hashes:
                endpoint = state.endpoint
                entry = cached(id(endpoint))
                blocks = (entry[1] if entry is not None and entry[0] is endpoint
                          else self._generations(endpoint))
                if blocks is not None:
                    young, old = blocks.young, blocks.old
                    first = hashes[0]
                    if first in young or first in old:
                        matched = _longest_prefix(young, old, hashes)
            tokens.append(float(matched * block_tokens))
            fractions.append(matched / len(hashes) if matched else 0.0)
        self._last_scan = (request, states, tokens, fractions)
        return tokens, fractions

    def record(self, endpoint: Endpoint, hashes: Sequence[int],
               capacity: int | None = None) -> None:
        """Remember that ``endpoint`` now holds these blocks (see the module docstring)."""
        self._last_scan = None
        if not hashes:
            return
        index = self._blocks
        blocks = index.get(endpoint)
        if blocks is None:
            blocks = index[endpoint] = _Generations()
            while len(index) > self.max_endpoints:
                index.popitem(last=False)
            self._by_id.clear()
        else:
            index.move_to_end(endpoint)
        limit = min(capacity if capacity is not None else self.capacity, self.max_capacity)
        blocks.add(hashes, max(1, limit // 2))

    def record_request(self, request: PickRequest, state: EndpointState) -> None:
        if request.prompt:
            self.record(state.endpoint, self.request_hashes(request, state),
                        self.capacity_for(state))

    def forget(self, endpoint: Endpoint) -> None:
        self._blocks.pop(endpoint, None)
        self._by_id.clear()
        self._last_scan = None

    def size(self, endpoint: Endpoint) -> int:
        """Block hashes stored for ``endpoint`` (a block in both generations counts twice)."""
        blocks = self._blocks.get(endpoint)
        return len(blocks) if blocks is not None else 0

    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(self._blocks)

    def total_entries(self) -> int:
        return sum(len(blocks) for blocks in self._blocks.values())


def _longest_prefix(young: dict[int, None], old: dict[int, None], hashes: Sequence[int]) -> int:
    """Length of the longest prefix of ``hashes`` in ``young | old`` (a prefix-closed set)."""
    if hashes[0] not in young and hashes[0] not in old:
        return 0
    high = len(hashes) - 1
    if hashes[high] in young or hashes[high] in old:
        return len(hashes)
    low = 0  # invariant: hashes[low] present, hashes[high] absent
    while high - low > 1:
        middle = (low + high) // 2
        block = hashes[middle]
        if block in young or block in old:
            low = middle
        else:
            high = middle
    return low + 1


class _Generations:
    """Two dicts used as sets: the blocks recorded since the last rotation, and before."""

    __slots__ = ("old", "young")

    def __init__(self) -> None:
        self.young: dict[int, None] = {}
        self.old: dict[int, None] = {}

    def add(self, hashes: Sequence[int], generation: int) -> None:
        if len(hashes) > generation:
            hashes = hashes[:generation]  # the head of a chain is what later requests share
        young = self.young
        if hashes[-1] in young:
            return  # the chain's last block covers the whole chain: all of it is young already
        if len(young) + len(hashes) > generation:  # counts present blocks as new: may rotate early
            self.old = young
            self.young = young = {}
        young.update(dict.fromkeys(hashes))

    def __len__(self) -> int:
        return len(self.young) + len(self.old)

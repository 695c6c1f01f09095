"""Block hashing and the per-server prefix cache (an LRU of block hashes).

A prompt is cut into blocks of ``block_size`` tokens; each block's hash covers the block and the
previous block's hash (the seed covers the model or adapter name), so equal hashes mean equal
prefixes. The cache is an LRU of fixed capacity in blocks; a lookup is a longest-prefix match
over the prompt's chain. This mirrors vLLM's automatic prefix caching closely enough that the
gateway's approximate prefix index can be judged against it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence


def block_hashes(seed: str, payloads: Iterable[bytes]) -> tuple[int, ...]:
    """Chained 64-bit hashes, one per block payload."""
    parent = hashlib.blake2b(seed.encode(), digest_size=8).digest()
    out: list[int] = []
    for payload in payloads:
        parent = hashlib.blake2b(parent + payload, digest_size=8).digest()
        out.append(int.from_bytes(parent, "little"))
    return tuple(out)


class PrefixCache:
    """An LRU of block hashes with a fixed capacity in blocks (0 disables caching)."""

    __slots__ = ("_blocks", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"prefix cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, block_hash: int) -> bool:
        return block_hash in self._blocks

    def match(self, hashes: Sequence[int]) -> int:
        """Number of leading blocks of ``hashes`` that are cached (does not touch the LRU)."""
        blocks = self._blocks
        matched = 0
        for block_hash in hashes:
            if block_hash not in blocks:
                break
            matched += 1
        return matched

    def touch(self, hashes: Sequence[int]) -> None:
        """Mark cached blocks of a chain as recently used."""
        # Reversed, so a chain's head ends most recent and its tail is evicted first:
        # evicting the head would make the rest of the chain unreachable.
        blocks = self._blocks
        for block_hash in reversed(hashes):
            if block_hash in blocks:
                blocks.move_to_end(block_hash)

    def insert(self, hashes: Sequence[int]) -> None:
        """Insert (or refresh) a chain of blocks, evicting least recently used ones."""
        if self.capacity == 0:
            return
        blocks = self._blocks
        for block_hash in reversed(hashes):
            blocks[block_hash] = None
            blocks.move_to_end(block_hash)
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)

    def clear(self) -> None:
        self._blocks.clear()

"""KV-cache block accounting for the simulated engine.

A running sequence holds blocks for every token it has computed (prompt and generated). Full prompt
blocks that are in the prefix cache (hits at admission, or computed since) are *shared*:
reference-counted by hash, so sequences with a common prefix pay for it once, as with vLLM's paged
attention. All other blocks are private. Usage is
``(distinct shared blocks + private blocks) / num_blocks``.
"""

from __future__ import annotations

from collections.abc import Sequence


def blocks_for(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


class BlockHolding:
    """The blocks one sequence holds."""

    __slots__ = ("private", "shared")

    def __init__(self) -> None:
        self.shared: tuple[int, ...] = ()
        self.private = 0

    @property
    def total(self) -> int:
        return len(self.shared) + self.private


class KVCache:
    """Counts used blocks; never stores token data."""

    __slots__ = ("_private", "_refs", "block_size", "num_blocks")

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._refs: dict[int, int] = {}
        self._private = 0

    @property
    def used_blocks(self) -> int:
        return len(self._refs) + self._private

    @property
    def free_blocks(self) -> int:
        return self.num_blocks - self.used_blocks

    @property
    def usage(self) -> float:
        return self.used_blocks / self.num_blocks

    def admission_cost(self, shared: Sequence[int], tokens: int) -> int:
        """New blocks needed to admit a sequence sharing ``shared`` and covering ``tokens``."""
        revived = sum(1 for h in shared if h not in self._refs)
        return revived + max(blocks_for(tokens, self.block_size) - len(shared), 0)

    def try_admit(self, holding: BlockHolding, shared: Sequence[int], tokens: int) -> bool:
        if self.admission_cost(shared, tokens) > self.free_blocks:
            return False
        refs = self._refs
        for h in shared:
            refs[h] = refs.get(h, 0) + 1
        holding.shared = tuple(shared)
        holding.private = max(blocks_for(tokens, self.block_size) - len(shared), 0)
        self._private += holding.private
        return True

    def try_grow(self, holding: BlockHolding, tokens: int) -> bool:
        """Extend a running sequence to cover ``tokens``; False when the cache is full."""
        needed = blocks_for(tokens, self.block_size) - holding.total
        if needed <= 0:
            return True
        if needed > self.free_blocks:
            return False
        holding.private += needed
        self._private += needed
        return True

    def share(self, holding: BlockHolding, hashes: Sequence[int]) -> None:
        """Turn private blocks into shared ones once the chain ``hashes`` is computed and cached.

        ``hashes`` extends ``holding.shared``. A block another sequence already shares is
        deduplicated, which frees one block.
        """
        refs = self._refs
        new = hashes[len(holding.shared):][:holding.private]
        for h in new:
            refs[h] = refs.get(h, 0) + 1
        holding.shared = (*holding.shared, *new)
        holding.private -= len(new)
        self._private -= len(new)

    def release(self, holding: BlockHolding) -> None:
        refs = self._refs
        for h in holding.shared:
            count = refs[h] - 1
            if count:
                refs[h] = count
            else:
                del refs[h]
        self._private -= holding.private
        holding.shared = ()
        holding.private = 0

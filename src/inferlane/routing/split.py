"""Weighted choice, shared by backendRef splits and model rewrites.

Weights follow Gateway API semantics: relative integers, 0 means "never", and a choice whose
weights are all zero has nothing to choose (the caller answers 503).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WeightedChoice(Generic[T]):
    items: tuple[T, ...]
    cumulative: tuple[int, ...]

    @classmethod
    def of(cls, pairs: Sequence[tuple[T, int]]) -> WeightedChoice[T]:
        kept = [(item, weight) for item, weight in pairs if weight > 0]
        items = tuple(item for item, _ in kept)
        cumulative = tuple(itertools.accumulate(weight for _, weight in kept))
        return cls(items, cumulative)

    @property
    def empty(self) -> bool:
        return not self.items

    def weighted(self) -> list[tuple[T, int]]:
        """The items with their weights, in config order."""
        return [(item, upto - previous) for item, upto, previous
                in zip(self.items, self.cumulative, (0, *self.cumulative), strict=False)]

    def choose(self, unit: float) -> T:
        """Pick with ``unit`` uniform in [0, 1); raises IndexError when empty."""
        if len(self.items) == 1:
            return self.items[0]
        point = unit * self.cumulative[-1]
        return self.items[bisect.bisect_right(self.cumulative, point)]

    def share(self, item: T) -> float:
        """Fraction of choices that land on ``item`` (for docs, tests and reports)."""
        total = self.cumulative[-1] if self.cumulative else 0
        previous = 0
        for candidate, upto in zip(self.items, self.cumulative, strict=True):
            if candidate == item:
                return (upto - previous) / total
            previous = upto
        return 0.0

"""Shared score shapes for load-style scorers."""

from __future__ import annotations

from collections.abc import Sequence


def fewer_is_better(values: Sequence[float]) -> list[float]:
    """Min-max normalisation, inverted: ``(max - v) / (max - min)``; all equal → 1.0 each.

    The least loaded candidate scores 1, the most loaded 0, the rest linearly in between.
    """
    if not values:
        return []
    low = min(values)
    high = max(values)
    if high == low:
        return [1.0] * len(values)
    span = float(high - low)
    return [(high - v) / span for v in values]


def relative_to_best(values: Sequence[float], floor: float) -> list[float]:
    """``best / v``, ``best`` being the smallest value (at least ``floor``): the cheapest
    candidate scores 1, one twice as costly 0.5; values at or below ``best`` score 1."""
    if not values:
        return []
    best = max(min(values), floor)
    return [best / v if v > best else 1.0 for v in values]

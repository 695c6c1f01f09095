"""``round-robin-picker``: each candidate in turn, ignoring scores.

``chosen = counter mod n``, then ``counter += 1``; the counter outlives changes to the candidate
list (modulo keeps it in range), so a shrinking pool does not restart at its first endpoint.
The baseline the inference-aware profiles must beat.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.types import EndpointState


class RoundRobinPicker:
    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def pick(self, request: PickRequest, candidates: Sequence[EndpointState],
             totals: Sequence[float]) -> int | None:
        if not candidates:
            return None
        index = self._next % len(candidates)
        self._next = (self._next + 1) % 1_000_000_007
        return index


def factory(name: str, params: Mapping[str, Any]) -> RoundRobinPicker:
    Params(name or "round-robin-picker", params).done()
    return RoundRobinPicker()

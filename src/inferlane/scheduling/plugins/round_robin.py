"""Round-robin picker: each endpoint in turn; the baseline the smart picker must beat."""

from __future__ import annotations

from collections.abc import Sequence

from inferlane.scheduling.interfaces import Endpoint, PickRequest


class RoundRobinPicker:
    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def pick(self, request: PickRequest, endpoints: Sequence[Endpoint]) -> Endpoint | None:
        if not endpoints:
            return None
        # The counter outlives changes to the candidate list; modulo keeps it in range.
        endpoint = endpoints[self._next % len(endpoints)]
        self._next = (self._next + 1) % 1_000_000_007
        return endpoint

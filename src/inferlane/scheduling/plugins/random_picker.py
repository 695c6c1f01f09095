"""Uniform random picker."""

from __future__ import annotations

import random
from collections.abc import Sequence

from inferlane.scheduling.interfaces import Endpoint, PickRequest


class RandomPicker:
    __slots__ = ("_random",)

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)

    def pick(self, request: PickRequest, endpoints: Sequence[Endpoint]) -> Endpoint | None:
        if not endpoints:
            return None
        return endpoints[self._random.randrange(len(endpoints))]

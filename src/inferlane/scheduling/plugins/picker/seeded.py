"""What the random-using pickers share: a seedable random source and its factory plumbing."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from inferlane.scheduling.plugins.params import Params


class SeededPicker:
    __slots__ = ("_random",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = rng or random.Random()


P = TypeVar("P", bound=SeededPicker)


def seeded_factory(
    cls: Callable[[random.Random], P], default_name: str, *, upstream_list_size: bool = True
) -> Callable[[str, Mapping[str, Any]], P]:
    """A ``(name, params) -> picker`` factory taking ``seed`` (and upstream's unused
    ``maxNumOfEndpoints`` fallback-list size, accepted so pasted configs load)."""

    def factory(name: str, params: Mapping[str, Any]) -> P:
        p = Params(name or default_name, params)
        if upstream_list_size:
            p.optional_integer("maxNumOfEndpoints", minimum=1)
        plugin = cls(random.Random(p.seed()))
        p.done()
        return plugin

    return factory

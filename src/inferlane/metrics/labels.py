"""Bounding label cardinality for values clients control.

A catch-all route accepts any ``model`` a client sends; used raw as a label, a client could
grow the metrics without bound. ``BoundedLabel`` passes values through until it has seen
``limit`` distinct ones, then maps every new value to ``"other"``.
"""

from __future__ import annotations

OTHER = "other"


class BoundedLabel:
    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int = 500) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value

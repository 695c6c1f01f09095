"""A pool at run time: its endpoints, its picker and its model rewrites."""

from __future__ import annotations

from dataclasses import dataclass

from inferlane.routing.rewrite import ModelRewriteTable
from inferlane.scheduling.interfaces import Endpoint, Picker


@dataclass(frozen=True, slots=True)
class PoolRuntime:
    key: str  # "namespace/name"
    name: str
    endpoints: tuple[Endpoint, ...]
    picker: Picker
    rewrites: ModelRewriteTable
    load_balancing: str = "round-robin"

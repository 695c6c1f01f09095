"""Limits and policies of the flow-control queues of one InferencePool.

Flow control has three levels (Gateway API Inference Extension): strict **priority bands** (a
higher priority always goes first), **fairness** between flows inside a band (a flow is one
fairness id at one priority), and **ordering** inside a flow. A band may be configured
explicitly; any other priority gets a copy of ``default_band``. Values only: validated here,
interpreted by ``queue.FlowController``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, get_args

__all__ = ["BandConfig", "Fairness", "FlowControlConfig", "Ordering"]

Fairness = Literal["round-robin", "fcfs"]
"""Between flows of a band: ``round-robin`` takes one request per flow in turn; ``fcfs`` keeps
one queue for the whole band (no fairness, oldest first or earliest deadline first)."""

Ordering = Literal["fcfs", "edf"]
"""Inside a flow: ``fcfs`` by arrival; ``edf`` earliest deadline first (no deadline = last),
ties by arrival."""

_FAIRNESS: tuple[str, ...] = get_args(Fairness)
_ORDERING: tuple[str, ...] = get_args(Ordering)


@dataclass(frozen=True, slots=True)
class BandConfig:
    """One priority band: its limits and its policies."""

    priority: int
    max_requests: int = 1000
    max_bytes: int = 64 * 2**20
    fairness: Fairness = "round-robin"
    ordering: Ordering = "fcfs"

    def __post_init__(self) -> None:
        where = f"flow-control band priority {self.priority}"
        if self.max_requests < 1:
            raise ValueError(f"{where}: max_requests must be >= 1, got {self.max_requests}")
        if self.max_bytes < 1:
            raise ValueError(f"{where}: max_bytes must be >= 1, got {self.max_bytes}")
        if self.fairness not in _FAIRNESS:
            raise ValueError(f"{where}: fairness must be one of {', '.join(_FAIRNESS)}, "
                             f"got {self.fairness!r}")
        if self.ordering not in _ORDERING:
            raise ValueError(f"{where}: ordering must be one of {', '.join(_ORDERING)}, "
                             f"got {self.ordering!r}")


@dataclass(frozen=True, slots=True)
class FlowControlConfig:
    """Bands, global limits (all bands together) and the time a request may wait."""

    bands: tuple[BandConfig, ...] = ()
    default_band: BandConfig = BandConfig(priority=0)  # template; its priority is ignored
    max_requests: int = 5000
    max_bytes: int = 256 * 2**20
    queue_ttl: float = 30.0  # seconds

    def __post_init__(self) -> None:
        seen: set[int] = set()
        for band in self.bands:
            if band.priority in seen:
                raise ValueError(f"flow-control bands: priority {band.priority} is listed twice; "
                                 f"give each band a distinct priority")
            seen.add(band.priority)
        if self.max_requests < 1:
            raise ValueError(f"flow-control max_requests must be >= 1, got {self.max_requests}")
        if self.max_bytes < 1:
            raise ValueError(f"flow-control max_bytes must be >= 1, got {self.max_bytes}")
        # Finite so that every queued request has an expiry time the data plane can wait for.
        if not (0 < self.queue_ttl < math.inf):
            raise ValueError(f"flow-control queue_ttl must be a positive, finite number of "
                             f"seconds, got {self.queue_ttl!r}")

    def band_for(self, priority: int) -> BandConfig:
        """The band listed for ``priority``, else the default template at that priority."""
        for band in self.bands:
            if band.priority == priority:
                return band
        return replace(self.default_band, priority=priority)

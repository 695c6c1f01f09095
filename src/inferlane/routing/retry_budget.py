"""Envoy-style retry budget: retries and fallbacks may add only a bounded share of load.

The fallback/retry path records every client request it accepts and asks ``try_spend`` before
each extra attempt (a retry or a fallback). Without a budget, an overloaded backend that fails
fast invites every request to try again, multiplying load exactly when it hurts most.

Design notes:

- Extra attempts are allowed while ``retries < max(min_retries, percent / 100 * requests)``
  over the last ``window`` seconds; ``min_retries`` lets a quiet gateway still retry.
- Counts live in whole-second buckets (at most ``ceil(window)`` of them), so each call is O(1)
  amortised and memory stays bounded however long it runs or however far the clock jumps. A
  bucket leaves the window ``ceil(window)`` seconds after the second it counts.
- A clock that steps back never reopens old buckets: its counts go into the newest.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    second: int
    requests: int = 0
    retries: int = 0


class RetryBudget:
    def __init__(self, *, percent: float = 20.0, min_retries: int = 3,
                 window: float = 10.0) -> None:
        if not (math.isfinite(percent) and percent >= 0):
            raise ValueError(f"retry budget percent must be a finite number >= 0, got {percent}")
        if min_retries < 0:
            raise ValueError(f"retry budget min_retries must be >= 0, got {min_retries}")
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"retry budget window must be > 0 seconds, got {window}")
        self._percent = percent
        self._min_retries = min_retries
        self._span = math.ceil(window)
        self._buckets: deque[_Bucket] = deque()
        self._requests = 0
        self._retries = 0

    def record_request(self, now: float) -> None:
        """Count one accepted client request (not its retries)."""
        self._current(now).requests += 1
        self._requests += 1

    def try_spend(self, now: float, request_time: float | None = None) -> bool:
        """Whether one more attempt (retry or fallback) fits the budget; counts it if so.

        ``request_time`` (when the request was recorded) files the attempt in the request's
        own bucket, so both leave the window together: otherwise a request counted just
        before a second boundary and its fallback just after could briefly overdraw a
        100 % budget."""
        bucket = self._current(now)
        # percent / 100 * requests without rounding: 7 / 100 * 100 is 7.000000000000001
        if (self._retries >= self._min_retries
                and self._retries * 100 >= self._percent * self._requests):
            return False
        if request_time is not None:
            bucket = self._bucket_of(request_time) or bucket
        bucket.retries += 1
        self._retries += 1
        return True

    def _bucket_of(self, moment: float) -> _Bucket | None:
        second = math.floor(moment)
        for bucket in reversed(self._buckets):  # at most window + 1 buckets
            if bucket.second == second:
                return bucket
            if bucket.second < second:
                break
        return None

    def retries(self, now: float) -> int:
        self._expire(now)
        return self._retries

    def requests(self, now: float) -> int:
        self._expire(now)
        return self._requests

    def _expire(self, now: float) -> int:
        second = math.floor(now)
        horizon = second - self._span  # buckets at or before it have left the window
        buckets = self._buckets
        while buckets and buckets[0].second <= horizon:
            gone = buckets.popleft()
            self._requests -= gone.requests
            self._retries -= gone.retries
        return second

    def _current(self, now: float) -> _Bucket:
        second = self._expire(now)
        if self._buckets and self._buckets[-1].second >= second:
            return self._buckets[-1]
        bucket = _Bucket(second)
        self._buckets.append(bucket)
        return bucket

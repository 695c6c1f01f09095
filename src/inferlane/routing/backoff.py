"""How long the fallback/retry path sleeps before a retry: exponential backoff, "full jitter".

Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter") spreads clients that failed
together over the whole interval, so they do not retry in lockstep against a recovering backend.
The random draw is the caller's, which keeps this a pure function and tests deterministic.
"""

from __future__ import annotations

import math


def backoff_delay(retry: int, *, base: float, cap: float, unit: float) -> float:
    """Seconds before retry ``retry`` (0 for the first): ``unit * min(cap, base * 2**retry)``.

    ``unit`` is a uniform draw in [0, 1), e.g. ``random.random()``.
    """
    if retry < 0:
        raise ValueError(f"backoff retry number must be >= 0, got {retry}")
    if not (math.isfinite(base) and base >= 0):
        raise ValueError(f"backoff base must be a finite number of seconds >= 0, got {base}")
    if not (math.isfinite(cap) and cap >= 0):
        raise ValueError(f"backoff cap must be a finite number of seconds >= 0, got {cap}")
    if not 0.0 <= unit < 1.0:
        raise ValueError(f"backoff unit must be a uniform draw in [0, 1), got {unit}")
    try:
        ceiling = math.ldexp(base, retry)  # base * 2**retry without an int-to-float overflow
    except OverflowError:
        ceiling = cap
    return unit * min(cap, ceiling)

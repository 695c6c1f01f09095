"""Steering: the order in which a rule's backends (InferencePools, Providers) are tried.

It sits between route match and the attempt loop. The rule gives the candidates (its backendRefs
with their weights); health and the data plane add what they know (healthy or critical, requests
in flight, probe latency); ``steer`` returns the order to try them. Pure: no clock, no I/O, and
randomness only through the ``unit`` the caller draws, so one ``unit`` always gives one order.

Session affinity (``affinity.py``) runs after steering and may move a pinned backend first.
"""

from __future__ import annotations

import enum
import ipaddress
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from inferlane.routing.backends import BackendRef
from inferlane.routing.split import WeightedChoice

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SteeringPolicy(enum.StrEnum):
    FAILOVER = "failover"  # config order
    RANDOM = "random"  # weighted random first choice (Gateway API split semantics)
    LEAST_OUTSTANDING = "least-outstanding-requests"  # fewest in flight per unit of weight
    DYNAMIC_LATENCY = "dynamic-latency"  # lowest probe RTT (EWMA) first
    GEO = "geo"  # the client region's preferred backends first, then RANDOM


@dataclass(frozen=True, slots=True)
class GeoSteering:
    header: str | None  # lower-case name of the header carrying the client's region
    source_cidrs: tuple[tuple[Network, str], ...]  # (network, region); longest prefix wins
    # region -> preferred backends, in order (a mapping: left out of the hash, still compared)
    regions: Mapping[str, tuple[BackendRef, ...]] = field(hash=False)

    def __post_init__(self) -> None:
        if self.header is not None and (not self.header or self.header != self.header.lower()):
            raise ValueError(f"geo steering header {self.header!r} must be a non-empty, "
                             "lower-case header name")

    def client_region(self, headers: Mapping[str, str], remote: str | None) -> str | None:
        """The region the header names (when configured and non-empty), else the region of the
        longest source CIDR holding ``remote``; None when neither tells (or ``remote`` is not
        an IP address). IPv4-mapped IPv6 addresses match IPv4 networks."""
        if self.header is not None:
            region = headers.get(self.header, "").strip()
            if region:
                return region
        if remote is None or not self.source_cidrs:
            return None
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        best: tuple[int, str] | None = None
        for network, region in self.source_cidrs:
            if network.version == address.version and address in network and (
                    best is None or network.prefixlen > best[0]):
                best = (network.prefixlen, region)
        return best[1] if best else None


@dataclass(frozen=True, slots=True)
class Steering:
    policy: SteeringPolicy = SteeringPolicy.RANDOM
    geo: GeoSteering | None = None  # required by GEO, refused by the others (it would be ignored)

    def __post_init__(self) -> None:
        if self.policy is SteeringPolicy.GEO and self.geo is None:
            raise ValueError("steering policy 'geo' needs a geo section (header, source CIDRs "
                             "or both, and the regions' preferred backends)")
        if self.policy is not SteeringPolicy.GEO and self.geo is not None:
            raise ValueError(f"steering policy {self.policy.value!r} ignores the geo section; "
                             "remove it or set the policy to 'geo'")


@dataclass(frozen=True, slots=True)
class Candidate:
    backend: BackendRef
    weight: int
    healthy: bool = True  # for a pool: not critical
    outstanding: int = 0  # requests in flight
    latency: float | None = None  # seconds, EWMA of probe RTT; None when unknown

    def __post_init__(self) -> None:
        if self.weight < 0 or self.outstanding < 0 or (
                self.latency is not None and not 0.0 <= self.latency < math.inf):
            raise ValueError(f"invalid {self!r}: weight and outstanding must be >= 0 and "
                             "latency None or finite and >= 0")


def steer(steering: Steering, candidates: Sequence[Candidate], *, unit: float,
          client_region: str | None = None) -> tuple[BackendRef, ...]:
    """The order to try ``candidates``: healthy ones by the policy, then unhealthy ones in
    config order (a last resort beats a 503). Weight 0 candidates are never returned; a backend
    listed twice is returned once, where it first lands.

    ====================  ========================================================================
    policy                healthy candidates, in order
    ====================  ========================================================================
    failover              config order
    random                one weighted draw with ``unit`` first, the rest in config order
    least-outstanding-    ascending ``outstanding / weight``; each tie group ordered as random
    requests              (so idle backends share by weight)
    dynamic-latency       ascending latency, ties as random; unknown latencies after all known
                          ones, as one tie group (so a cold start spreads by weight)
    geo                   ``client_region``'s preferred backends in their configured order, then
                          the others as random; an unknown or absent region is plain random
    ====================  ========================================================================

    ``unit`` is uniform in [0, 1); the same ``unit`` and inputs always give the same order.
    """
    if not 0.0 <= unit < 1.0:
        raise ValueError(f"unit must be in [0, 1), got {unit!r}")
    live = [c for c in candidates if c.weight > 0]
    healthy = [c for c in live if c.healthy]
    policy = steering.policy
    if policy is SteeringPolicy.FAILOVER:
        ordered = healthy
    elif policy is SteeringPolicy.RANDOM:
        ordered = _weighted_first(healthy, unit)
    elif policy is SteeringPolicy.LEAST_OUTSTANDING:
        ordered = _ranked(healthy, lambda c: Fraction(c.outstanding, c.weight), unit)
    elif policy is SteeringPolicy.DYNAMIC_LATENCY:
        ordered = _ranked(healthy, lambda c: (c.latency is None, c.latency or 0.0), unit)
    else:
        assert steering.geo is not None  # Steering.__post_init__
        ordered = _geo(steering.geo, healthy, client_region, unit)
    ordered.extend(c for c in live if not c.healthy)
    return tuple(dict.fromkeys(c.backend for c in ordered))


def _weighted_first(group: Sequence[Candidate], unit: float) -> list[Candidate]:
    """One weighted draw first, the others in their given order (every weight is > 0)."""
    if len(group) < 2:
        return list(group)
    first = WeightedChoice.of([(i, c.weight) for i, c in enumerate(group)]).choose(unit)
    return [group[first], *group[:first], *group[first + 1:]]


def _ranked(group: Sequence[Candidate], key: Callable[[Candidate], SupportsRichComparison],
            unit: float) -> list[Candidate]:
    """Ascending ``key``; candidates with equal keys ordered by ``_weighted_first``."""
    ordered: list[Candidate] = []
    for _, tied in itertools.groupby(sorted(group, key=key), key=key):
        ordered.extend(_weighted_first(list(tied), unit))
    return ordered


def _geo(geo: GeoSteering, healthy: Sequence[Candidate], region: str | None,
         unit: float) -> list[Candidate]:
    preferred = geo.regions.get(region, ()) if region is not None else ()
    by_backend: dict[BackendRef, Candidate] = {}
    for candidate in healthy:
        by_backend.setdefault(candidate.backend, candidate)
    head = [by_backend[b] for b in dict.fromkeys(preferred) if b in by_backend]
    chosen = {c.backend for c in head}
    return head + _weighted_first([c for c in healthy if c.backend not in chosen], unit)


class LatencyEwma:
    """Exponentially weighted moving average of a pool's probe RTT, in seconds: the first
    sample sets it, each later one moves it by ``alpha`` of the difference."""

    __slots__ = ("_value", "alpha")

    def __init__(self, alpha: float = 0.3) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"EWMA alpha must be in (0, 1], got {alpha!r}")
        self.alpha = alpha
        self._value: float | None = None

    @property
    def value(self) -> float | None:
        return self._value

    def update(self, sample: float) -> float:
        if not 0.0 <= sample < math.inf:
            raise ValueError(f"latency sample must be finite and >= 0, got {sample!r}")
        previous = self._value
        value = sample if previous is None else previous + self.alpha * (sample - previous)
        self._value = value
        return value

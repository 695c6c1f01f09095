"""HTTPRoute matching with Gateway API precedence.

First step of the request path after the body is read: the request's facts (method, path, host,
headers — including ``x-gateway-model-name`` filled from the body's ``model`` — and query) are
matched against every rule of every route attached to the listener. Among matching rules the
Gateway API order decides:

1. Exact path, then RegularExpression path (implementation-specific, placed as Envoy Gateway
   does), then PathPrefix with the longest value;
2. a rule with a method match;
3. the most header matches; 4. the most query-param matches;
5. the oldest route (file order outside Kubernetes), then rule order, then match order.

The table is built once per config snapshot and is immutable; matching is a linear scan over
pre-sorted entries, which is cheap at the sizes routes come in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

PathType = Literal["Exact", "PathPrefix", "RegularExpression"]
T = TypeVar("T")

_PATH_RANK: dict[str, int] = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What route matching looks at. Header names are lower-case."""

    method: str
    path: str
    host: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    remote: str | None = None  # the client's address (geo steering by source CIDR)


@dataclass(frozen=True, slots=True)
class ValueMatcher:
    """An Exact or RegularExpression match on one header or query parameter."""

    name: str  # lower-case for headers; as written for query params
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, values: Mapping[str, str]) -> bool:
        actual = values.get(self.name)
        if actual is None:
            return False
        if self.regex is not None:
            return self.regex.fullmatch(actual) is not None
        return actual == self.value


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """One entry of an HTTPRoute rule's ``matches`` (an empty rule gets ``PathPrefix /``)."""

    path_type: PathType = "PathPrefix"
    path_value: str = "/"
    method: str | None = None
    headers: tuple[ValueMatcher, ...] = ()
    query: tuple[ValueMatcher, ...] = ()
    path_regex: re.Pattern[str] | None = None

    def matches(self, facts: RequestFacts) -> bool:
        if self.method is not None and facts.method != self.method:
            return False
        if not _path_matches(self.path_type, self.path_value, self.path_regex, facts.path):
            return False
        for header in self.headers:
            if not header.matches(facts.headers):
                return False
        return all(param.matches(facts.query) for param in self.query)

    def precedence(self) -> tuple[int, int, int, int, int]:
        return (
            _PATH_RANK[self.path_type],
            -len(self.path_value),
            0 if self.method is not None else 1,
            -len(self.headers),
            -len(self.query),
        )


def _path_matches(
    path_type: PathType, value: str, regex: re.Pattern[str] | None, path: str
) -> bool:
    if path_type == "Exact":
        return path == value
    if path_type == "RegularExpression":
        return regex is not None and regex.fullmatch(path) is not None
    # PathPrefix matches whole path elements: /v1 matches /v1 and /v1/x, not /v1x.
    prefix = value.rstrip("/")
    if not prefix:
        return True
    return path == prefix or path.startswith(prefix + "/")


def wildcard_matches(pattern: str, hostname: str) -> bool:
    """Gateway API rule: ``*.example.com`` matches ``a.example.com`` and ``a.b.example.com``,
    not ``example.com``; anything else matches itself. Case is the caller's business."""
    if pattern.startswith("*."):
        suffix = pattern[1:]
        return hostname.endswith(suffix) and len(hostname) > len(suffix)
    return pattern == hostname


def hostname_matches(patterns: Sequence[str], host: str) -> bool:
    """A request's Host header against route hostnames; an empty list matches every host."""
    if not patterns:
        return True
    host = _strip_port(host).lower()
    return any(wildcard_matches(pattern.lower(), host) for pattern in patterns)


def _strip_port(host: str) -> str:
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    key: tuple[int, ...]
    match: RuleMatch
    hostnames: tuple[str, ...]
    target: T


class RouteTable(Generic[T]):
    """Matches requests to targets (compiled rules) in Gateway API precedence order."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: list[_Entry[T]] = []

    def add(
        self,
        match: RuleMatch,
        target: T,
        *,
        hostnames: Sequence[str] = (),
        route_order: int = 0,
        rule_index: int = 0,
        match_index: int = 0,
    ) -> None:
        key = (*match.precedence(), route_order, rule_index, match_index)
        self._entries.append(_Entry(key, match, tuple(hostnames), target))
        self._entries.sort(key=lambda entry: entry.key)

    def __len__(self) -> int:
        return len(self._entries)

    def targets(self) -> list[T]:
        """Every target, in precedence order (a target with several matches repeats)."""
        return [entry.target for entry in self._entries]

    def match(self, facts: RequestFacts) -> tuple[RuleMatch, T] | None:
        """The winning (match, target), or None when no rule matches."""
        for entry in self._entries:
            if entry.match.matches(facts) and hostname_matches(entry.hostnames, facts.host):
                return entry.match, entry.target
        return None

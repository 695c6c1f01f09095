"""``session-affinity-scorer``: send a session back to the endpoint that served it last.

The session key is the value of the request header ``header`` (default ``x-session-id``) or,
when absent, of the cookie ``cookie`` (if configured). After each pick the key is bound to the
chosen endpoint until ``request.now + ttlSeconds`` (default 300; refreshed on every pick).

``score_i = 1.0`` for the bound endpoint while the binding is live, ``0.0`` for every other
candidate, and 0.0 for all when there is no key or no live binding (no evidence, no preference).
If the bound endpoint was filtered out, the session moves to whatever is picked instead.
At most ``maxSessions`` bindings (default 100,000) are kept, least recently used dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.types import EndpointState

DEFAULT_HEADER = "x-session-id"
DEFAULT_TTL_SECONDS = 300.0
DEFAULT_MAX_SESSIONS = 100_000


class SessionAffinityScorer:
    __slots__ = ("_sessions", "cookie", "header", "max_sessions", "ttl_seconds")
    SCORES_IN_RANGE = True  # see framework.profile

    def __init__(self, *, header: str | None = DEFAULT_HEADER, cookie: str | None = None,
                 ttl_seconds: float = DEFAULT_TTL_SECONDS,
                 max_sessions: int = DEFAULT_MAX_SESSIONS) -> None:
        self.header = header.lower() if header else None
        self.cookie = cookie
        self.ttl_seconds = ttl_seconds
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, tuple[Endpoint, float]] = OrderedDict()

    def session_key(self, request: PickRequest) -> str | None:
        if self.header is not None:
            value = request.headers.get(self.header)
            if value:
                return value
        if self.cookie is not None:
            return _cookie(request.headers.get("cookie", ""), self.cookie)
        return None

    def bound_endpoint(self, request: PickRequest) -> Endpoint | None:
        key = self.session_key(request)
        if key is None:
            return None
        binding = self._sessions.get(key)
        if binding is None:
            return None
        if binding[1] < request.now:
            del self._sessions[key]
            return None
        return binding[0]

    def score(self, request: PickRequest, candidates: Sequence[EndpointState]) -> list[float]:
        target = self.bound_endpoint(request)
        if target is None:
            return [0.0] * len(candidates)
        return [1.0 if s.endpoint == target else 0.0 for s in candidates]

    def picked(self, request: PickRequest, state: EndpointState) -> None:
        key = self.session_key(request)
        if key is None:
            return
        sessions = self._sessions
        sessions[key] = (state.endpoint, request.now + self.ttl_seconds)
        sessions.move_to_end(key)
        while len(sessions) > self.max_sessions:
            sessions.popitem(last=False)

    def __len__(self) -> int:
        return len(self._sessions)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name and value:
            return value.strip('"')
    return None


def factory(name: str, params: Mapping[str, Any]) -> SessionAffinityScorer:
    p = Params(name or "session-affinity-scorer", params)
    header = p.string("header")
    cookie = p.string("cookie")
    plugin = SessionAffinityScorer(
        header=header if header or cookie else DEFAULT_HEADER,
        cookie=cookie,
        ttl_seconds=p.seconds("ttlSeconds", DEFAULT_TTL_SECONDS),
        max_sessions=p.integer("maxSessions", DEFAULT_MAX_SESSIONS, minimum=1),
    )
    p.done()
    return plugin

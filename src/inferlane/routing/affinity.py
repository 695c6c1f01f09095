"""Session affinity between a rule's backends (Gateway API ``sessionPersistence``).

It runs after steering (``steering.py``): a session that already lives on a healthy backend of
the chain goes there first (``pin``); the rest of the chain stays as steering ordered it.

- Header sessions: the header's value is the key. ``AffinityTable`` remembers which backend a
  key went to (idle and absolute timeouts, bounded LRU); a new key can instead be placed by
  ``hrw_order``, which needs no table and agrees across gateway replicas.
- Cookie sessions: the cookie carries ``cookie_token(backend)``, a short keyed hash of the
  backend's label, and ``backend_for_token`` reads it back against the rule's candidates.

Pure: the caller passes ``now`` (its monotonic clock) and the health verdicts.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from inferlane.routing.backends import BackendRef
from inferlane.routing.steering import Candidate

TOKEN_HEX_CHARS = 16


def _hash_unit(key: str, label: str) -> float:
    """A stable number strictly inside (0, 1) for (session key, backend label)."""
    digest = hashlib.blake2b(f"{key}\0{label}".encode("utf-8", "surrogateescape"),
                             digest_size=8, person=b"inferlane-hrw").digest()
    # 53 bits, what a float holds exactly; the half step keeps 0 and 1 out (ln must be < 0).
    return ((int.from_bytes(digest, "big") >> 11) + 0.5) / 2.0**53


def hrw_order(key: str, candidates: Sequence[Candidate]) -> tuple[BackendRef, ...]:
    """Weighted rendezvous hashing of a session ``key``: healthy candidates with weight > 0 by
    descending ``-weight / ln(h)``, then unhealthy ones in config order; weight 0 never.

    Each score depends only on (key, backend), so removing a backend moves only the sessions
    that were on it, and a backend is first for ``weight / total`` of the keys (the minimum of
    exponential draws with rates ``weight``)."""
    live = [c for c in candidates if c.weight > 0]
    scored = sorted(
        ((-c.weight / math.log(_hash_unit(key, c.backend.label)), -index, c.backend)
         for index, c in enumerate(live) if c.healthy),
        key=lambda item: item[:2], reverse=True,  # equal scores: config order
    )
    ordered = [backend for _, _, backend in scored]
    ordered.extend(c.backend for c in live if not c.healthy)
    return tuple(dict.fromkeys(ordered))


@dataclass(slots=True)
class _Session:
    backend: BackendRef
    created: float
    last_used: float


class AffinityTable:
    """Session key -> backend, bounded: past ``max_entries`` the least recently used session is
    forgotten. Expired sessions are dropped when looked up."""

    __slots__ = ("_sessions", "max_entries")

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"affinity table max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def lookup(self, key: str, now: float, *, idle_timeout: float | None,
               absolute_timeout: float | None) -> BackendRef | None:
        """The session's backend, or None when unknown or expired: unused for ``idle_timeout``
        seconds or more, or bound ``absolute_timeout`` seconds ago or more (None: no limit).
        A hit counts as a use."""
        session = self._sessions.get(key)
        if session is None:
            return None
        if ((idle_timeout is not None and now - session.last_used >= idle_timeout)
                or (absolute_timeout is not None and now - session.created >= absolute_timeout)):
            del self._sessions[key]
            return None
        session.last_used = now
        self._sessions.move_to_end(key)
        return session.backend

    def remember(self, key: str, backend: BackendRef, now: float) -> None:
        """Record that ``key`` was served by ``backend``. A session moved to another backend
        (its own failed over) is a new binding: its absolute timeout restarts."""
        session = self._sessions.get(key)
        if session is not None and session.backend == backend:
            session.last_used = now
            self._sessions.move_to_end(key)
            return
        self._sessions[key] = _Session(backend, now, now)
        self._sessions.move_to_end(key)
        while len(self._sessions) > self.max_entries:
            self._sessions.popitem(last=False)

    def forget(self, key: str) -> None:
        self._sessions.pop(key, None)


def cookie_token(backend: BackendRef, *, secret: bytes = b"") -> str:
    """A short stable token for ``backend``'s label, for the session cookie. Keyed by
    ``secret`` (up to 64 bytes; the same on every replica) so it cannot be matched against
    guessed pool names; without one it only hides the label from casual reading."""
    return hashlib.blake2b(backend.label.encode("utf-8", "surrogateescape"),
                           digest_size=TOKEN_HEX_CHARS // 2, key=secret,
                           person=b"inferlane-cookie").hexdigest()


def backend_for_token(token: str, candidates: Sequence[Candidate], *,
                      secret: bytes = b"") -> BackendRef | None:
    """The candidate (weight > 0, healthy or not: ``pin`` checks health) whose token is
    ``token``; None for a stale, foreign or malformed token."""
    if len(token) != TOKEN_HEX_CHARS:
        return None
    token = token.lower()
    for candidate in candidates:
        if candidate.weight > 0 and cookie_token(candidate.backend, secret=secret) == token:
            return candidate.backend
    return None


def pin(chain: tuple[BackendRef, ...], pinned: BackendRef | None,
        healthy: Callable[[BackendRef], bool]) -> tuple[BackendRef, ...]:
    """``chain`` with ``pinned`` moved first when it is in the chain and healthy; otherwise the
    chain unchanged (the session moves: the caller remembers the backend that serves it)."""
    if pinned is None or pinned not in chain or not healthy(pinned):
        return chain
    return (pinned, *(b for b in chain if b != pinned))


@dataclass(frozen=True, slots=True)
class SessionAffinity:
    """A rule's ``sessionPersistence``: ``name`` is the header (lower-case) or cookie name.

    Header: the header's value is the session key, remembered per gateway for ``idle_timeout``
    / ``absolute_timeout`` (None: no limit) and placed by ``hrw_order`` when new. Cookie: the
    gateway sets ``name=<cookie_token(backend)>`` on answers; ``permanent`` cookies get
    ``Max-Age`` (``idle_timeout`` refreshed on every answer, else ``absolute_timeout``).
    """

    type: Literal["Cookie", "Header"]
    name: str
    idle_timeout: float | None = None
    absolute_timeout: float | None = None
    permanent: bool = True

    def cookie_max_age(self) -> int | None:
        if self.type != "Cookie" or not self.permanent:
            return None
        seconds = self.idle_timeout if self.idle_timeout is not None else self.absolute_timeout
        return None if seconds is None else max(int(seconds), 1)


def cookie_value(cookie_header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` request header (first one wins)."""
    for part in cookie_header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None

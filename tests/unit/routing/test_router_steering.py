"""Config text → snapshot → ``Router.route`` with health, steering and session affinity."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from inferlane.config.build import build_snapshot
from inferlane.config.loader import load_config_text
from inferlane.dataplane.relay import _session_cookie
from inferlane.routing.affinity import AffinityTable, SessionAffinity, cookie_token
from inferlane.routing.backends import BackendKind, BackendRef
from inferlane.routing.match import RequestFacts
from inferlane.routing.router import MODEL_HEADER, GatewaySnapshot, Routed, Router
from inferlane.routing.rules import CompiledRule
from inferlane.routing.steering import GeoSteering, Steering, SteeringPolicy

BASE = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: inferlane
  listeners: [{name: http, port: 8080, protocol: HTTP}]
"""
POOLS = "".join(f"""
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  targetPorts: [{{number: 8000}}]
---
apiVersion: inferlane.dev/v1alpha1
kind: ModelServer
metadata: {{name: {name}-0, labels: {{app: {name}}}}}
spec: {{address: "127.0.0.{i + 1}:8000", models: [m]}}
""" for i, name in enumerate(("a", "b", "c", "spare")))


def route_doc(weights: tuple[int, int, int] = (1, 1, 1), persistence: str = "") -> str:
    refs = ", ".join(f"{{group: inference.networking.k8s.io, kind: InferencePool, name: {n}, "
                     f"weight: {w}}}" for n, w in zip("abc", weights, strict=True))
    return f"""
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: chat}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - backendRefs: [{refs}]
{persistence}
"""


def policy_doc(steering: str = "", fallback: bool = True) -> str:
    lines = ["---", "apiVersion: inferlane.dev/v1alpha1", "kind: TrafficPolicy",
             "metadata: {name: tp}", "spec:",
             "  targetRefs: [{kind: HTTPRoute, name: chat}]"]
    if fallback:
        lines.append("  fallback: {backendRefs: [{group: inference.networking.k8s.io, "
                     "kind: InferencePool, name: spare}]}")
    if steering:
        lines.append("  steering: " + steering)
    return "\n".join(lines) + "\n"


def pool(name: str) -> BackendRef:
    return BackendRef(BackendKind.POOL, f"default/{name}")


A, B, C, SPARE = pool("a"), pool("b"), pool("c"), pool("spare")


@dataclass
class Signals:
    """What the data plane tells the router about pools (a plain value holder)."""

    critical_pools: set[str] = field(default_factory=set)
    latencies: dict[str, float] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)

    def critical(self, pool_key: str) -> bool:
        return pool_key in self.critical_pools

    def latency(self, pool_key: str) -> float | None:
        return self.latencies.get(pool_key)

    def outstanding(self, pool_key: str) -> int:
        return self.in_flight.get(pool_key, 0)


def snapshot(*docs: str) -> GatewaySnapshot:
    return build_snapshot(load_config_text(BASE + POOLS + "".join(docs)))


def route(snap: GatewaySnapshot, signals: Signals | None = None, *, seed: int = 0,
          remote: str | None = None, table: AffinityTable | None = None, now: float = 0.0,
          router: Router | None = None, **headers: str) -> Routed:
    facts_headers = {k.replace("_", "-"): v for k, v in headers.items()}
    facts_headers[MODEL_HEADER] = "m"
    listener = snap.listener("gw/http")
    assert listener is not None
    return (router or Router(random.Random(seed))).route(
        snap, listener, RequestFacts("POST", "/v1/chat/completions", "gw", facts_headers,
                                     remote=remote),
        model="m", health=signals, sessions=(lambda _rule: table), now=now)


def the_rule(snap: GatewaySnapshot) -> CompiledRule:
    listener = snap.listener("gw/http")
    assert listener is not None
    (rule,) = {r for r in listener.routes.targets()}
    return rule


# -- build --------------------------------------------------------------------------------------

def test_build_compiles_steering_geo_and_affinity() -> None:
    geo = ('{policy: geo, geo: {header: X-Region, sourceCIDRs: [{cidr: 10.1.0.0/16, region: eu}],'
           ' regions: [{region: eu, backendRefs: [{group: inference.networking.k8s.io, '
           'kind: InferencePool, name: b}]}]}}')
    persistence = ("    sessionPersistence: {type: Cookie, sessionName: s, absoluteTimeout: 1h,"
                   " cookieConfig: {lifetimeType: Permanent}}")
    rule = the_rule(snapshot(route_doc(persistence=persistence), policy_doc(geo)))
    assert rule.steering == Steering(SteeringPolicy.GEO, GeoSteering(
        header="x-region", source_cidrs=((ipaddress.ip_network("10.1.0.0/16"), "eu"),),
        regions={"eu": (B,)}))
    assert rule.affinity == SessionAffinity("Cookie", "s", None, 3600.0, permanent=True)
    assert rule.sticky_header is None


def test_build_header_affinity_and_no_steering_without_a_policy() -> None:
    persistence = "    sessionPersistence: {type: Header, sessionName: X-User, idleTimeout: 10m}"
    rule = the_rule(snapshot(route_doc(persistence=persistence)))
    assert rule.steering is None
    assert rule.affinity == SessionAffinity("Header", "x-user", 600.0, None)
    assert rule.sticky_header == "x-user"


# -- health without a steering policy ----------------------------------------------------------

def test_without_critical_pools_the_plain_split_is_unchanged() -> None:
    snap = snapshot(route_doc(), policy_doc())
    for seed in range(20):
        plain = route(snap, seed=seed)
        with_health = route(snap, Signals(), seed=seed)
        assert plain.chain == with_health.chain
        assert len(plain.chain) == 2
        assert plain.chain[1] == SPARE


def test_a_critical_pool_is_never_the_first_choice_and_weights_hold_among_the_rest() -> None:
    snap = snapshot(route_doc(weights=(1, 1, 3)), policy_doc())
    signals = Signals(critical_pools={"default/a"})
    firsts = Counter(route(snap, signals, seed=seed).chain[0] for seed in range(2000))
    assert A not in firsts
    assert 0.7 < firsts[C] / (firsts[B] + firsts[C]) < 0.8  # 3:1
    chain = route(snap, signals, seed=1).chain
    assert len(chain) == 2  # the healthy choice, then the fallbacks only
    assert chain[1] == SPARE


def test_every_pool_critical_keeps_a_choice() -> None:
    snap = snapshot(route_doc(), policy_doc())
    chain = route(snap, Signals(critical_pools={"default/a", "default/b", "default/c"})).chain
    assert chain[0] in (A, B, C)
    assert chain[-1] == SPARE


# -- steering policies --------------------------------------------------------------------------

def test_failover_puts_every_backend_in_order_with_critical_ones_last() -> None:
    snap = snapshot(route_doc(), policy_doc("{policy: failover}"))
    assert route(snap, Signals()).chain == (A, B, C, SPARE)
    assert route(snap, Signals(critical_pools={"default/a"})).chain == (B, C, A, SPARE)


def test_least_outstanding_and_dynamic_latency_read_the_signals() -> None:
    least = snapshot(route_doc(), policy_doc("{policy: least-outstanding-requests}"))
    signals = Signals(in_flight={"default/a": 5, "default/b": 0, "default/c": 2})
    assert route(least, signals).chain[:3] == (B, C, A)
    fastest = snapshot(route_doc(), policy_doc("{policy: dynamic-latency}"))
    signals = Signals(latencies={"default/a": 0.03, "default/b": 0.01, "default/c": 0.02})
    assert route(fastest, signals).chain[:3] == (B, C, A)


@pytest.mark.parametrize(("headers", "remote", "first"), [
    ({"x_region": "eu"}, None, B),
    ({}, "10.1.2.3", B),
    ({"x_region": "eu"}, "192.0.2.1", B),
])
def test_geo_prefers_the_client_regions_backends(headers: dict[str, str], remote: str | None,
                                                 first: BackendRef) -> None:
    geo = ('{policy: geo, geo: {header: X-Region, sourceCIDRs: [{cidr: 10.1.0.0/16, region: eu}],'
           ' regions: [{region: eu, backendRefs: [{group: inference.networking.k8s.io, '
           'kind: InferencePool, name: b}]}]}}')
    snap = snapshot(route_doc(), policy_doc(geo))
    assert route(snap, Signals(), remote=remote, **headers).chain[0] == first
    # Its preferred backend down: another one of the rule, not the critical one.
    chain = route(snap, Signals(critical_pools={"default/b"}), remote=remote, **headers).chain
    assert chain[0] != B
    assert chain[-2:] == (B, SPARE)


# -- session affinity ---------------------------------------------------------------------------

def test_header_sessions_stay_put_and_move_only_when_their_pool_is_critical() -> None:
    persistence = "    sessionPersistence: {type: Header, sessionName: X-User}"
    snap = snapshot(route_doc(persistence=persistence), policy_doc())
    homes = {user: route(snap, Signals(), seed=s, x_user=user).chain[0]
             for s, user in enumerate(f"user-{i}" for i in range(300))}
    assert set(homes.values()) == {A, B, C}
    for seed, (user, home) in enumerate(homes.items()):
        again = route(snap, Signals(), seed=seed + 1000, x_user=user)
        assert again.chain[0] == home
        assert again.session == user
    # Pool a goes critical: only a's sessions move (rendezvous hashing), to healthy pools.
    signals = Signals(critical_pools={"default/a"})
    for user, home in homes.items():
        moved = route(snap, signals, x_user=user).chain[0]
        assert moved == home if home != A else moved in (B, C)


def test_a_remembered_header_session_beats_hashing_until_it_expires() -> None:
    persistence = "    sessionPersistence: {type: Header, sessionName: X-User, idleTimeout: 60s}"
    snap = snapshot(route_doc(persistence=persistence), policy_doc())
    hashed = route(snap, Signals(), x_user="u1").chain[0]
    other = next(b for b in (A, B, C) if b != hashed)
    table = AffinityTable()
    table.remember("u1", other, 0.0)  # e.g. it failed over there earlier
    assert route(snap, Signals(), table=table, now=30.0, x_user="u1").chain[0] == other
    assert route(snap, Signals(), table=table, now=200.0, x_user="u1").chain[0] == hashed


def test_cookie_sessions_follow_the_cookie_unless_its_pool_is_critical() -> None:
    persistence = "    sessionPersistence: {type: Cookie, sessionName: s}"
    snap = snapshot(route_doc(persistence=persistence), policy_doc())
    cookie = f"other=1; s={cookie_token(C)}"
    for seed in range(30):
        assert route(snap, Signals(), seed=seed, cookie=cookie).chain[0] == C
    moved = route(snap, Signals(critical_pools={"default/c"}), cookie=cookie).chain[0]
    assert moved in (A, B)
    unknown = route(snap, Signals(), cookie="s=0000000000000000")
    assert unknown.chain[0] in (A, B, C)


def test_set_cookie_names_the_backend_that_answered() -> None:
    persistence = ("    sessionPersistence: {type: Cookie, sessionName: s, idleTimeout: 5m, "
                   "cookieConfig: {lifetimeType: Permanent}}")
    snap = snapshot(route_doc(persistence=persistence), policy_doc())
    routed = route(snap, Signals(), cookie=f"s={cookie_token(A)}")
    assert _session_cookie(routed, A) == f"s={cookie_token(A)}; Path=/; HttpOnly; Max-Age=300"
    assert _session_cookie(routed, B) == f"s={cookie_token(B)}; Path=/; HttpOnly; Max-Age=300"
    assert _session_cookie(routed, SPARE) is None  # a fallback is not a session's home
    session_only = snapshot(route_doc(persistence="    sessionPersistence: {type: Cookie}"))
    fresh = route(session_only, Signals())
    assert _session_cookie(fresh, fresh.chain[0]) == (
        f"inferlane-session={cookie_token(fresh.chain[0])}; Path=/; HttpOnly")
    same = route(session_only, Signals(), cookie=f"inferlane-session={cookie_token(A)}")
    assert _session_cookie(same, A) is None  # nothing new to tell the client

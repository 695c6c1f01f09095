"""Config text → snapshot → routing decision, with no sockets (phase two + the router)."""

import random
from collections import Counter

import pytest

from inferlane.config.build import build_snapshot
from inferlane.config.loader import load_config_text
from inferlane.errors import ModelNotFound, NoEndpointAvailable, NotFound
from inferlane.routing.match import RequestFacts
from inferlane.routing.router import MODEL_HEADER, GatewaySnapshot, Router

HEADER = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: inferlane
  listeners:
  - {name: http, port: 8080, protocol: HTTP}
  - {name: admin, port: 8081, protocol: HTTP}
"""

SERVERS = """
---
apiVersion: inferlane.dev/v1alpha1
kind: ModelServer
metadata: {name: a-0, labels: {app: a}}
spec: {address: "127.0.0.1:9000", models: [model-a]}
---
apiVersion: inferlane.dev/v1alpha1
kind: ModelServer
metadata: {name: a-1, labels: {app: a}}
spec: {address: "127.0.0.1:9001", models: [model-a]}
---
apiVersion: inferlane.dev/v1alpha1
kind: ModelServer
metadata: {name: b-0, labels: {app: b}}
spec: {address: "10.0.0.7", models: [model-b, model-b-lora]}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: pool-a
  annotations: {inferlane.dev/load-balancing: round-robin}
spec:
  selector: {matchLabels: {app: a}}
  targetPorts: [{number: 8000}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool-b}
spec:
  selector: {matchLabels: {app: b}}
  targetPorts: [{number: 8000}, {number: 8001}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: empty}
spec:
  selector: {matchLabels: {app: nobody}}
  targetPorts: [{number: 8000}]
"""


def snapshot(routes: str) -> GatewaySnapshot:
    return build_snapshot(load_config_text(HEADER + SERVERS + routes))


def decide(snap: GatewaySnapshot, model: str, path: str = "/v1/chat/completions",
           listener: str = "gw/http", seed: int = 0, **headers: str):  # type: ignore[no-untyped-def]
    facts_headers = {k.replace("_", "-"): v for k, v in headers.items()}
    facts_headers[MODEL_HEADER] = model
    found = snap.listener(listener)
    assert found is not None
    return Router(random.Random(seed)).decide(
        snap, found, RequestFacts("POST", path, "gw", facts_headers), model=model,
        request_id="r1",
    )


BY_MODEL = """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: by-model}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{headers: [{name: X-Gateway-Model-Name, value: model-a}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-a}]
  - matches:
    - headers: [{name: X-Gateway-Model-Name, type: RegularExpression, value: "model-b.*"}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-b}]
  - matches: [{headers: [{name: X-Gateway-Model-Name, value: ghost}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: empty}]
"""


def test_pool_endpoints_come_from_selected_model_servers() -> None:
    snap = snapshot(BY_MODEL)
    assert [e.address for e in snap.pools["default/pool-a"].endpoints] == [
        "127.0.0.1:9000", "127.0.0.1:9001"]
    # A server without a port is reached on every targetPort of the pool.
    assert [e.address for e in snap.pools["default/pool-b"].endpoints] == [
        "10.0.0.7:8000", "10.0.0.7:8001"]
    assert snap.pools["default/empty"].endpoints == ()


def test_routes_by_model_header_filled_from_body() -> None:
    snap = snapshot(BY_MODEL)
    assert decide(snap, "model-a").pool.key == "default/pool-a"
    assert decide(snap, "model-b-lora").pool.key == "default/pool-b"
    with pytest.raises(ModelNotFound, match="model-c"):
        decide(snap, "model-c")


def test_route_attached_to_one_listener_only() -> None:
    snap = snapshot(BY_MODEL)
    with pytest.raises(ModelNotFound):
        decide(snap, "model-a", listener="gw/admin")


def test_pool_without_endpoints_is_503_naming_the_pool() -> None:
    with pytest.raises(NoEndpointAvailable, match="default/empty"):
        decide(snapshot(BY_MODEL), "ghost")


def test_models_list_holds_exact_model_matches_only() -> None:
    # Regex matches cannot be enumerated; exact ones can.
    assert snapshot(BY_MODEL).models == ("ghost", "model-a")


def test_round_robin_within_pool() -> None:
    snap = snapshot(BY_MODEL)
    ports = [decide(snap, "model-a").endpoint.port for _ in range(4)]
    assert ports == [9000, 9001, 9000, 9001]


SPLIT = """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: pool-a, weight: 80}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: pool-b, weight: 20}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Tier, value: gold}]
        remove: [X-Debug]
    timeouts: {request: 30s, backendRequest: 10s}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: canary}
spec:
  poolRef: {name: pool-b}
  rules:
  - matches: [{model: {value: model-b}}]
    targets: [{modelRewrite: model-b, weight: 50}, {modelRewrite: model-b-lora, weight: 50}]
"""


def test_weighted_split_across_pools_and_rewrite_inside_pool() -> None:
    snap = snapshot(SPLIT)
    router = Router(random.Random(11))
    listener = snap.listener("gw/http")
    assert listener is not None
    pools: Counter[str] = Counter()
    upstream: Counter[str] = Counter()
    for _ in range(4000):
        decision = router.decide(
            snap, listener,
            RequestFacts("POST", "/v1/completions", "gw", {MODEL_HEADER: "model-b"}),
            model="model-b", request_id="r",
        )
        pools[decision.pool.key] += 1
        if decision.pool.key == "default/pool-b":
            upstream[decision.upstream_model] += 1
    assert pools["default/pool-a"] / 4000 == pytest.approx(0.8, abs=0.03)
    assert upstream["model-b-lora"] / sum(upstream.values()) == pytest.approx(0.5, abs=0.06)


def test_catch_all_route_lists_server_models_and_compiles_filters() -> None:
    snap = snapshot(SPLIT)
    assert snap.models == ("model-a", "model-b", "model-b-lora")
    decision = decide(snap, "model-a", listener="gw/admin")
    rule = decision.rule
    assert rule.request_headers is not None
    assert rule.request_headers.set == (("x-tier", "gold"),)
    assert rule.request_headers.remove == ("x-debug",)
    assert rule.upstream_timeout == 10.0


def test_zero_weight_backends_answer_503() -> None:
    routes = """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: disabled}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: pool-a, weight: 0}
"""
    with pytest.raises(NoEndpointAvailable, match="weight > 0"):
        decide(snapshot(routes), "model-a")


def test_no_model_and_no_route_is_plain_not_found() -> None:
    snap = snapshot(BY_MODEL)
    listener = snap.listener("gw/http")
    assert listener is not None
    with pytest.raises(NotFound):
        Router().decide(snap, listener, RequestFacts("POST", "/x"), model="", request_id="r")


def test_url_rewrite_prefix() -> None:
    routes = """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: rewrite}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /openai/v1}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v1}}
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-a}]
"""
    decision = decide(snapshot(routes), "model-a", path="/openai/v1/chat/completions")
    assert decision.upstream_path == "/v1/chat/completions"

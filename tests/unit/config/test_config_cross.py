"""Checks across resources (errors) and the warnings for what loads but is not served."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from inferlane.config.loader import load_config_text
from inferlane.errors import ConfigError

if TYPE_CHECKING:
    from conftest import World

DELETE = "<delete>"
R0 = ("spec", "rules", 0)
B0 = (*R0, "backendRefs", 0)
P0 = ("spec", "parentRefs", 0)


Patches = list[tuple[str, tuple[Any, ...], Any]]
Extra = list[tuple[str, dict[str, Any]]]  # (baseline document, top-level replacements)


@pytest.mark.parametrize(
    ("patches", "extra", "where", "fragment"),
    [
        # parentRefs
        ([("route", ("spec", "parentRefs"), DELETE)], [], "spec.parentRefs",
         "attached to no Gateway"),
        ([("route", (*P0, "kind"), "Service")], [], "spec.parentRefs[0].kind",
         "only Gateway parents are"),
        ([("route", (*P0, "group"), "example.com")], [], "spec.parentRefs[0].kind",
         "only Gateway parents are"),
        ([("route", (*P0, "name"), "gw2")], [], "spec.parentRefs[0].name",
         'Gateway "default/gw2" not found (did you mean "gw"?)'),
        ([("route", ("metadata", "namespace"), "team"),
          ("route", (*B0, "namespace"), "default")], [], "spec.parentRefs[0].name",
         "there is one in namespace default"),
        ([("route", (*P0, "sectionName"), "https")], [], "spec.parentRefs[0]",
         'has no listener named "https"'),
        ([("route", (*P0, "port"), 9090)], [], "spec.parentRefs[0]",
         "has no listener on port 9090"),
        ([("route", (*P0, "port"), 9090), ("route", (*P0, "sectionName"), "http")], [],
         "spec.parentRefs[0]", 'named "http" and on port 9090'),
        ([("route", ("metadata", "namespace"), "team"),
          ("route", (*P0, "namespace"), "default"),
          ("route", (*B0, "namespace"), "default")], [], "spec.parentRefs[0]",
         'only accepts routes from namespace "default"'),
        ([("gateway", ("spec", "listeners", 0, "allowedRoutes"),
           {"kinds": [{"kind": "GRPCRoute"}]})], [], "spec.parentRefs[0]",
         "does not list HTTPRoute in allowedRoutes.kinds"),
        ([("gateway", ("spec", "listeners", 0, "hostname"), "a.example.com"),
          ("route", ("spec", "hostnames"), ["b.example.com"])], [], "spec.parentRefs[0]",
         "matches none of the route hostnames"),
        ([("gateway", ("spec", "listeners", 1), {"name": "tcp", "port": 9000, "protocol": "TCP"}),
          ("route", (*P0, "sectionName"), "tcp")], [], "spec.parentRefs[0]",
         "does not carry HTTPRoutes"),
        # backendRefs
        ([("route", (*R0, "backendRefs"), DELETE)], [], "spec.rules[0]",
         "the rule has no backendRefs"),
        ([("route", (*R0, "backendRefs"), []),
          ("route", (*R0, "filters"), [{"type": "RequestMirror",
                                        "requestMirror": {"backendRef": {"name": "s"}}}])],
         [], "spec.rules[0]", "only a RequestRedirect rule may have none"),
        ([("route", B0, {"name": "svc", "port": 80})], [], "spec.rules[0].backendRefs[0].kind",
         'backendRef to Service "svc" is not supported'),
        ([("route", (*B0, "kind"), "ServiceImport")], [], "spec.rules[0].backendRefs[0].kind",
         "name an InferencePool (group inference.networking.k8s.io) or a Provider"),
        ([("route", B0, {"group": "inferlane.dev", "kind": "Provider", "name": "oai"})], [],
         "spec.rules[0].backendRefs[0].name", 'Provider "default/oai" not found'),
        ([("route", B0, {"group": "inference.networking.k8s.io", "kind": "Provider",
                         "name": "oai"})], [],
         "spec.rules[0].backendRefs[0].group", 'must be "inferlane.dev" for a Provider'),
        ([("route", (*R0, "filters"), [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"group": "inference.networking.k8s.io", "kind": "InferencePool",
                           "name": "shadow"}}}])], [],
         "spec.rules[0].filters[0].requestMirror.backendRef.name",
         'InferencePool "default/shadow" not found'),
        ([("route", (*R0, "sessionPersistence"),
           {"type": "Cookie", "sessionName": "s", "cookieConfig": {"lifetimeType": "Permanent"}})],
         [], "spec.rules[0].sessionPersistence.absoluteTimeout",
         "a Permanent cookie needs absoluteTimeout"),
        ([("route", (*R0, "sessionPersistence"), {"type": "Header"})], [],
         "spec.rules[0].sessionPersistence.sessionName", "name the header"),
        ([("route", (*B0, "group"), DELETE)], [], "spec.rules[0].backendRefs[0].group",
         'must be "inference.networking.k8s.io"'),
        ([("route", (*B0, "group"), "inference.networking.x-k8s.io")], [],
         "spec.rules[0].backendRefs[0].group", 'must be "inference.networking.k8s.io"'),
        ([("route", (*B0, "name"), "pool-2")], [], "spec.rules[0].backendRefs[0].name",
         'InferencePool "default/pool-2" not found (did you mean "pool"?)'),
        ([("route", (*B0, "namespace"), "other")], [], "spec.rules[0].backendRefs[0].name",
         'InferencePool "other/pool" not found'),
        # duplicates and existence
        ([], [("pool", {})], "metadata.name", 'duplicate InferencePool "default/pool"'),
        ([], [("gateway", {})], "metadata.name", 'duplicate Gateway "default/gw"'),
        ([], [("server", {"metadata": {"name": "server-2"}})], "spec.address",
         'address "127.0.0.1:18000" is already used by ModelServer default/server'),
        ([], [("server", {"metadata": {"name": "server-2", "namespace": "b"},
                     "spec": {"address": "127.0.0.1:18000"}})], "spec.address", "already used by"),
        ([("rewrite", ("spec", "poolRef", "name"), "pol")], [], "spec.poolRef.name",
         'InferencePool "default/pol" not found (did you mean "pool"?)'),
        ([("rewrite", ("spec", "poolRef", "kind"), "Service")], [], "spec.poolRef.kind",
         "poolRef must name an InferencePool"),
        ([("rewrite", ("spec", "poolRef", "group"), "")], [], "spec.poolRef.group",
         "poolRef must name an InferencePool"),
    ],
)
def test_cross_resource_errors(world: World, patches: Patches, extra: Extra, where: str,
                               fragment: str) -> None:
    docs = [world.doc(name, **changes) for name, changes in extra]
    world.expect(world.errors(patches, docs), where, fragment)


def test_a_different_namespace_resource_is_not_a_duplicate(world: World) -> None:
    pool = world.doc("pool", metadata={"name": "pool", "namespace": "other"})
    server = world.doc("server", spec={"address": "10.0.0.9"},
                       metadata={"name": "s", "namespace": "other", "labels": {"app": "llm"}})
    route = world.doc("route", metadata={"name": "route", "namespace": "other"})
    route["spec"]["parentRefs"] = [{"name": "gw", "namespace": "default"}]
    gateway = [("gateway", ("spec", "listeners", 0, "allowedRoutes"),
                {"namespaces": {"from": "All"}})]
    bundle = world.load(gateway, [pool, server, route])
    assert [p.namespace for p in bundle.inference_pools] == ["default", "other"]
    other = bundle.pool("other", "pool")
    assert other is not None
    assert [s.name for s in bundle.servers_for(other)] == ["s"]
    assert [r.namespace for r in bundle.routes_for(bundle.gateways[0])] == ["default", "other"]


def test_no_gateway() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text("")
    (issue,) = caught.value.issues
    assert (issue.kind, issue.name, issue.line) == ("Gateway", "?", None)
    assert str(issue) == ("<string>: Gateway/?: no Gateway defined: add a Gateway with an HTTP "
                          "listener (gateway.networking.k8s.io/v1)")


def test_broken_resources_do_not_cascade(world: World) -> None:
    # The pool is invalid on its own; the route's reference to it must not add a second error.
    found = world.errors([("pool", ("spec", "targetPorts"), [])])
    assert found == [("spec.targetPorts", "must not be empty")]
    found = world.errors([("gateway", ("spec", "listeners"), [])])
    assert found == [("spec.listeners", "must not be empty")]


@pytest.mark.parametrize(
    ("patches", "extra", "where", "fragment"),
    [
        ([("route", (*R0, "filters"), [{"type": t, f: s}])], [], "spec.rules[0].filters[0].type",
         f"{t} filters are not implemented yet")
        for t, f, s in [
            ("ExtensionRef", "extensionRef", {"group": "x.io", "kind": "F", "name": "f"}),
            ("CORS", "cors", {"allowOrigins": ["*"]}),
            ("ExternalAuth", "externalAuth", {"protocol": "HTTP", "backendRef": {"name": "a"}}),
        ]
    ] + [
        ([("route", (*R0, "sessionPersistence"), {"type": "Header", "sessionName": "x-user",
                                                  "cookieConfig": {}})], [],
         "spec.rules[0].sessionPersistence.cookieConfig", "has no effect on type Header"),
        ([("route", (*B0, "filters"), [{"type": "RequestHeaderModifier",
                                        "requestHeaderModifier": {"remove": ["a"]}}])], [],
         "spec.rules[0].backendRefs[0].filters", "filters on a backendRef are not implemented"),
        ([("route", (*B0, "weight"), 0)], [], "spec.rules[0].backendRefs",
         "every backendRef has weight 0"),
        ([("route", (*B0, "namespace"), "other")],
         [("pool", {"metadata": {"name": "pool", "namespace": "other"}})],
         "spec.rules[0].backendRefs[0].namespace", "ReferenceGrants are not checked"),
        ([("server", ("metadata", "labels"), {"app": "other"})], [],
         "spec.selector.matchLabels", "matches no ModelServer"),
        ([("server", ("metadata", "labels"), {"app": "other"})], [],
         "metadata.labels", "no InferencePool selects this server"),
        ([("server", ("metadata", "namespace"), "elsewhere")], [],
         "spec.selector.matchLabels", "matching labels on elsewhere/server, but pools only"),
        ([], [("pool", {"metadata": {"name": "idle"}})], "metadata.name",
         "no HTTPRoute backendRef names this pool"),
        ([("pool", ("metadata", "annotations"), {"inferlane.dev/load-balanse": "random"})], [],
         'metadata.annotations["inferlane.dev/load-balanse"]',
         'did you mean "inferlane.dev/load-balancing"'),
        ([("gateway", ("metadata", "annotations"), {"inferlane.dev/x": "1"})], [],
         'metadata.annotations["inferlane.dev/x"]', "unknown inferlane annotation, ignored"),
        ([("pool", ("metadata", "annotations"), {"inferlane.dev/zzzzzzzz": "1"})], [],
         'metadata.annotations["inferlane.dev/zzzzzzzz"]',
         "InferencePool understands: inferlane.dev/context-window, "
         "inferlane.dev/default-objective, "
         "inferlane.dev/endpoint-picker-config, inferlane.dev/flow-control, "
         "inferlane.dev/load-balancing"),
        ([("rewrite", ("spec", "rules", 1), {"matches": [{"model": {"value": "m-canary"}}],
                                             "targets": [{"modelRewrite": "x"}]})], [],
         "spec.rules[1].matches[0].model.value",
         'model "m-canary" is already rewritten by InferenceModelRewrite rewrite rules[0]'),
        ([("rewrite", ("spec", "rules"), [{"targets": [{"modelRewrite": "a"}]},
                                          {"targets": [{"modelRewrite": "b"}]}])], [],
         "spec.rules[1]", "already rewrites every model of this pool"),
    ],
)
def test_warnings(world: World, patches: Patches, extra: Extra, where: str,
                  fragment: str) -> None:
    docs = [world.doc(name, **changes) for name, changes in extra]
    world.expect(world.warnings(patches, docs), where, fragment)


def test_baseline_has_no_warnings(world: World) -> None:
    assert world.warnings() == []

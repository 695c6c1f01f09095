"""Gateway validation: every error path of the model, and the Gateway warnings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from inferlane.config.resources import LabelSelector

if TYPE_CHECKING:
    from conftest import World

DELETE = "<delete>"

L0 = ("spec", "listeners", 0)
HTTP2 = {"name": "second", "port": 8081, "protocol": "HTTP"}


@pytest.mark.parametrize(
    ("path", "value", "where", "fragment"),
    [
        (("spec", "gatewayClassName"), DELETE, "spec.gatewayClassName", "required field"),
        (("spec", "gatewayClassName"), "", "spec.gatewayClassName", "must not be empty"),
        (("spec", "listeners"), [], "spec.listeners", "must not be empty"),
        (("spec", "listeners"), [{**HTTP2, "name": f"l{i}", "port": 9000 + i} for i in range(65)],
         "spec.listeners", "at most 64"),
        (("spec", "listeners"), {"name": "http"}, "spec.listeners", "must be a list"),
        (("spec", "listeners", 0), "http", "spec.listeners[0]", "must be a mapping"),
        ((*L0, "port"), 0, "spec.listeners[0].port", "must be between 1 and 65535"),
        ((*L0, "port"), 70000, "spec.listeners[0].port", "must be between 1 and 65535"),
        ((*L0, "port"), "8080", "spec.listeners[0].port", "write the number without quotes"),
        ((*L0, "port"), 80.5, "spec.listeners[0].port", "must be an integer"),
        ((*L0, "port"), DELETE, "spec.listeners[0].port", "required field"),
        ((*L0, "protocol"), "QUIC", "spec.listeners[0].protocol", "must be one of"),
        ((*L0, "protocol"), "HTPP", "spec.listeners[0].protocol", 'did you mean "HTTP"'),
        ((*L0, "name"), "HTTP", "spec.listeners[0].name", "not a valid name"),
        ((*L0, "name"), DELETE, "spec.listeners[0].name", "required field"),
        ((*L0, "hostname"), "1.2.3.4", "spec.listeners[0].hostname", "not a valid hostname"),
        ((*L0, "hostname"), "Example.com", "spec.listeners[0].hostname", "not a valid hostname"),
        ((*L0, "hostname"), "a.*.com", "spec.listeners[0].hostname", "not a valid hostname"),
        ((*L0, "protocl"), "HTTP", "spec.listeners[0].protocl", 'did you mean "protocol"'),
        ((*L0, "tls"), {"mode": "Passthrough"}, "spec.listeners[0].tls",
         "must not be set for protocol HTTP"),
        ((*L0, "tls"), {"mode": "Bogus"}, "spec.listeners[0].tls.mode", "must be one of"),
        ((*L0, "allowedRoutes"), {"namespaces": {"from": "Selector"}},
         "spec.listeners[0].allowedRoutes.namespaces.selector", "required when from is Selector"),
        ((*L0, "allowedRoutes"), {"namespaces": {"from": "Everywhere"}},
         "spec.listeners[0].allowedRoutes.namespaces.from", "must be one of"),
        ((*L0, "allowedRoutes"), {"kinds": [{"kind": "HTTPRoute"}] * 9},
         "spec.listeners[0].allowedRoutes.kinds", "at most 8"),
        ((*L0, "allowedRoutes"), {"kinds": [{"kind": "1Route"}]},
         "spec.listeners[0].allowedRoutes.kinds[0].kind", "not a valid kind"),
        ((*L0, "allowedRoutes"), {"kinds": [{"group": "Bad_Group", "kind": "HTTPRoute"}]},
         "spec.listeners[0].allowedRoutes.kinds[0].group", "not a valid API group"),
        ((*L0, "allowedRoutes"),
         {"namespaces": {"from": "Selector", "selector": {
             "matchExpressions": [{"key": "a", "operator": "In"}]}}},
         "spec.listeners[0].allowedRoutes.namespaces.selector.matchExpressions[0].values",
         "must not be empty for operator In"),
        ((*L0, "allowedRoutes"),
         {"namespaces": {"from": "Selector", "selector": {
             "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}},
         "spec.listeners[0].allowedRoutes.namespaces.selector.matchExpressions[0].values",
         "must be empty for operator Exists"),
        ((*L0, "allowedRoutes"),
         {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"a": "b c"}}}},
         "spec.listeners[0].allowedRoutes.namespaces.selector.matchLabels.a",
         "not a valid label value"),
        (("spec", "listeners", 1), {**HTTP2, "name": "http"}, "spec.listeners[1].name",
         'duplicate listener name "http"'),
        (("spec", "listeners", 1), {**HTTP2, "port": 8080}, "spec.listeners[1].port",
         'port 8080 is already used by listener "http"'),
        (("spec", "addresses"), [{"value": ""}], "spec.addresses[0].value", "must not be empty"),
        (("spec", "addresses"), [{}] * 17, "spec.addresses", "at most 16"),
        (("spec", "infrastructure"), {"labels": {f"k{i}": "v" for i in range(9)}},
         "spec.infrastructure.labels", "at most 8"),
        (("spec", "infrastructure"), {"parametersRef": {"group": "", "kind": "ConfigMap"}},
         "spec.infrastructure.parametersRef.name", "required field"),
        (("spec", "listenrs"), [], "spec.listenrs", 'did you mean "listeners"'),
        (("spec", "gateway_class_name"), "x", "spec.gateway_class_name",
         'did you mean "gatewayClassName"'),
    ],
)
def test_gateway_field_errors(world: World, path: tuple[Any, ...], value: Any, where: str,
                              fragment: str) -> None:
    world.expect(world.errors([("gateway", path, value)]), where, fragment)


@pytest.mark.parametrize(
    ("listener", "where", "fragment"),
    [
        ({"protocol": "HTTPS"}, "spec.listeners[1].tls", "is required for protocol HTTPS"),
        ({"protocol": "TLS"}, "spec.listeners[1].tls", "is required for protocol TLS"),
        ({"protocol": "HTTPS", "tls": {"mode": "Passthrough", "certificateRefs": [{"name": "c"}]}},
         "spec.listeners[1].tls.mode", "must be Terminate for protocol HTTPS"),
        ({"protocol": "HTTPS", "tls": {"mode": "Terminate"}},
         "spec.listeners[1].tls.certificateRefs", "certificateRefs or options must be specified"),
        ({"protocol": "TCP", "hostname": "a.example.com"}, "spec.listeners[1].hostname",
         "must not be set for protocol TCP"),
        ({"protocol": "UDP", "tls": {"certificateRefs": [{"name": "c"}]}},
         "spec.listeners[1].tls", "must not be set for protocol UDP"),
        ({"protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "c", "namespace": "A"}]}},
         "spec.listeners[1].tls.certificateRefs[0].namespace", "not a valid namespace"),
    ],
)
def test_listener_protocol_rules(world: World, listener: dict[str, Any], where: str,
                                 fragment: str) -> None:
    patch = ("gateway", ("spec", "listeners", 1), {**HTTP2, **listener})
    world.expect(world.errors([patch]), where, fragment)


def test_gateway_accepts_every_upstream_field(world: World) -> None:
    gateway = {
        "spec": {
            "gatewayClassName": "inferlane",
            "listeners": [
                {"name": "http", "port": 8080, "protocol": "http", "hostname": "*.example.com",
                 "allowedRoutes": {"namespaces": {"from": "All"},
                                   "kinds": [{"group": "gateway.networking.k8s.io",
                                              "kind": "HTTPRoute"}]}},
                {"name": "https", "port": 8443, "protocol": "HTTPS",
                 "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cert"}],
                         "options": {"example.com/min-version": "1.3"},
                         "frontendValidation": {"caCertificateRefs": []}}},
            ],
            "addresses": [{"type": "IPAddress", "value": "10.0.0.1"}, {"value": "gw.local"}],
            "infrastructure": {"labels": {"a": "b"}, "annotations": {"c": "d"},
                               "parametersRef": {"group": "", "kind": "ConfigMap", "name": "p"}},
            "allowedListeners": {"namespaces": {"from": "None"}},
            "tls": {"backend": {}},
            "defaultScope": "All",
        },
    }
    patches = [("gateway", ("spec",), gateway["spec"]),
               ("route", ("spec", "hostnames"), ["api.example.com"])]
    bundle = world.load(patches)
    listeners = bundle.gateways[0].spec.listeners
    assert listeners[0].protocol == "HTTP"  # case-insensitive, normalised
    assert bundle.gateways[0].listener("https") is listeners[1]
    assert bundle.gateways[0].listener("nope") is None
    assert [w for w in world.warnings(patches) if "not served yet" in w[1]] == [
        ("spec.listeners[1].protocol", "HTTPS listeners are not served yet (only HTTP): this "
                                       "listener is ignored")]


def test_gateway_v1beta1_is_accepted(world: World) -> None:
    bundle = world.load([("gateway", ("apiVersion",), "gateway.networking.k8s.io/v1beta1")])
    assert bundle.gateways[0].api_version == "gateway.networking.k8s.io/v1beta1"


@pytest.mark.parametrize("protocol", ["TLS", "HTTPS"])  # TCP and UDP: test_config_l4.py
def test_non_http_listener_is_a_warning(world: World, protocol: str) -> None:
    tls = {"tls": {"mode": "Passthrough"}} if protocol == "TLS" else {}
    if protocol == "HTTPS":
        tls = {"tls": {"certificateRefs": [{"name": "cert"}]}}
    patch = ("gateway", ("spec", "listeners", 1), {**HTTP2, "protocol": protocol, **tls})
    world.expect(world.warnings([patch]), "spec.listeners[1].protocol", "not served yet")


def test_selector_namespaces_warn(world: World) -> None:
    allowed = {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}}}
    warnings = world.warnings([("gateway", (*L0, "allowedRoutes"), allowed)])
    world.expect(warnings, "spec.listeners[0].allowedRoutes.namespaces.from",
                 "routes from every namespace are accepted")


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({}, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
         {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
         {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
    ],
)
def test_label_selector_matches(selector: dict[str, Any], labels: dict[str, str],
                                matches: bool) -> None:
    assert LabelSelector.model_validate(selector).matches(labels) is matches

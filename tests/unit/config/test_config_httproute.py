"""HTTPRoute validation: matches, filters, backendRefs, timeouts and the route-level rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from inferlane.config.resources import HTTPRouteMatch

if TYPE_CHECKING:
    from conftest import World

DELETE = "<delete>"
R0 = ("spec", "rules", 0)
M0 = (*R0, "matches", 0)
B0 = (*R0, "backendRefs", 0)
POOL_REF = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool"}


def _filter(type_: str, field: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_, field: settings}


HEADERS = {"set": [{"name": "x-a", "value": "1"}]}
REWRITE_PREFIX = _filter("URLRewrite", "urlRewrite",
                         {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}})


@pytest.mark.parametrize(
    ("path", "value", "where", "fragment"),
    [
        # path matches
        ((*M0, "path", "value"), "v1", "spec.rules[0].matches[0].path.value",
         'must start with "/"'),
        ((*M0, "path", "value"), "/a//b", "spec.rules[0].matches[0].path.value",
         'must not contain "//"'),
        ((*M0, "path", "value"), "/a/../b", "spec.rules[0].matches[0].path.value",
         'must not contain "/../"'),
        ((*M0, "path", "value"), "/a%2Fb", "spec.rules[0].matches[0].path.value",
         'must not contain "%2F"'),
        ((*M0, "path", "value"), "/a#b", "spec.rules[0].matches[0].path.value",
         'must not contain "#"'),
        ((*M0, "path", "value"), "/a/..", "spec.rules[0].matches[0].path.value",
         "must not end with"),
        ((*M0, "path", "value"), "/a b", "spec.rules[0].matches[0].path.value",
         "characters not allowed"),
        ((*M0, "path", "value"), "/" + "a" * 1024, "spec.rules[0].matches[0].path.value",
         "at most 1024 characters"),
        ((*M0, "path"), {"type": "Exact", "value": "x"}, "spec.rules[0].matches[0].path.value",
         'must start with "/"'),
        ((*M0, "path"), {"type": "RegularExpression", "value": "/v1/(["},
         "spec.rules[0].matches[0].path.value", "not a valid regular expression"),
        ((*M0, "path", "type"), "Prefix", "spec.rules[0].matches[0].path.type",
         "must be one of"),
        # header and query matches
        ((*M0, "headers"), [{"name": "bad name", "value": "x"}],
         "spec.rules[0].matches[0].headers[0].name", "not a valid HTTP header name"),
        ((*M0, "headers"), [{"name": "x-a", "value": ""}],
         "spec.rules[0].matches[0].headers[0].value", "must not be empty"),
        ((*M0, "headers"), [{"name": "x-a", "value": "(", "type": "RegularExpression"}],
         "spec.rules[0].matches[0].headers[0].value", "not a valid regular expression"),
        ((*M0, "headers"), [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}],
         "spec.rules[0].matches[0].headers[1].name", 'duplicate name "x-a"'),
        ((*M0, "headers"), [{"name": f"h{i}", "value": "v"} for i in range(17)],
         "spec.rules[0].matches[0].headers", "at most 16"),
        ((*M0, "headers"), [{"name": "x-a", "value": 1}],
         "spec.rules[0].matches[0].headers[0].value", 'quote it: "1"'),
        ((*M0, "headers"), [{"name": "x-a", "value": True}],
         "spec.rules[0].matches[0].headers[0].value", "quote the value"),
        ((*M0, "queryParams"), [{"name": "q", "value": "[", "type": "RegularExpression"}],
         "spec.rules[0].matches[0].queryParams[0].value", "not a valid regular expression"),
        ((*M0, "queryParams"), [{"name": "q", "value": "1"}, {"name": "q", "value": "2"}],
         "spec.rules[0].matches[0].queryParams[1].name", 'duplicate name "q"'),
        ((*M0, "method"), "get", "spec.rules[0].matches[0].method", 'did you mean "GET"'),
        ((*R0, "matches"), [{}] * 65, "spec.rules[0].matches", "at most 64"),
        # filters
        ((*R0, "filters"), [{"type": "RequestHeaderModifier"}],
         "spec.rules[0].filters[0].requestHeaderModifier", "is required when type is"),
        ((*R0, "filters"), [{"type": "RequestHeaderModifier", "requestHeaderModifier": HEADERS,
                             "responseHeaderModifier": HEADERS}],
         "spec.rules[0].filters[0].responseHeaderModifier", "must not be set when type is"),
        ((*R0, "filters"), [{"type": "Rewrite"}], "spec.rules[0].filters[0].type",
         "must be one of"),
        ((*R0, "filters"), [_filter("RequestHeaderModifier", "requestHeaderModifier", HEADERS)] * 2,
         "spec.rules[0].filters[1].type", "cannot be repeated"),
        ((*R0, "filters"), [_filter("ResponseHeaderModifier", "responseHeaderModifier",
                                    {"set": [{"name": "a", "value": "1"}], "remove": ["A"]})],
         "spec.rules[0].filters[0].responseHeaderModifier.remove[0]",
         "only one action per header name"),
        ((*R0, "filters"), [_filter("RequestHeaderModifier", "requestHeaderModifier",
                                    {"add": [{"name": "a:b", "value": "1"}]})],
         "spec.rules[0].filters[0].requestHeaderModifier.add[0].name", "not a valid HTTP header"),
        ((*R0, "filters"), [_filter("URLRewrite", "urlRewrite",
                                    {"path": {"type": "ReplaceFullPath"}})],
         "spec.rules[0].filters[0].urlRewrite.path.replaceFullPath", "is required when type is"),
        ((*R0, "filters"), [_filter("URLRewrite", "urlRewrite",
                                    {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/a",
                                              "replacePrefixMatch": "/b"}})],
         "spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch", "must not be set"),
        ((*R0, "filters"), [_filter("URLRewrite", "urlRewrite",
                                    {"path": {"type": "ReplaceFullPath", "replaceFullPath": "a"}})],
         "spec.rules[0].filters[0].urlRewrite.path.replaceFullPath", 'must start with "/"'),
        ((*R0, "filters"), [_filter("URLRewrite", "urlRewrite", {"hostname": "*.example.com"})],
         "spec.rules[0].filters[0].urlRewrite.hostname", "wildcard is not allowed"),
        ((*R0, "filters"), [_filter("URLRewrite", "urlRewrite", {}),
                            _filter("RequestRedirect", "requestRedirect", {})],
         "spec.rules[0].filters[0].type", "cannot be combined"),
        ((*R0, "filters"), [_filter("RequestRedirect", "requestRedirect", {"statusCode": 304})],
         "spec.rules[0].filters[0].requestRedirect.statusCode", "must be one of"),
        ((*R0, "filters"), [_filter("RequestRedirect", "requestRedirect", {"scheme": "ftp"})],
         "spec.rules[0].filters[0].requestRedirect.scheme", "must be one of"),
        ((*R0, "filters"), [_filter("RequestRedirect", "requestRedirect", {})],
         "spec.rules[0].backendRefs", "must be empty when the rule has a RequestRedirect"),
        ((*R0, "filters"), [_filter("RequestMirror", "requestMirror",
                                    {"backendRef": {"name": "s"}, "percent": 10,
                                     "fraction": {"numerator": 1}})],
         "spec.rules[0].filters[0].requestMirror.fraction", "only one of percent or fraction"),
        ((*R0, "filters"), [_filter("RequestMirror", "requestMirror",
                                    {"backendRef": {"name": "s"}, "percent": 101})],
         "spec.rules[0].filters[0].requestMirror.percent", "between 0 and 100"),
        ((*R0, "filters"), [_filter("RequestMirror", "requestMirror",
                                    {"backendRef": {"name": "s"},
                                     "fraction": {"numerator": 5, "denominator": 4}})],
         "spec.rules[0].filters[0].requestMirror.fraction.numerator", "greater than denominator"),
        ((*R0, "filters"), [_filter("RequestMirror", "requestMirror", {})],
         "spec.rules[0].filters[0].requestMirror.backendRef", "required field"),
        ((*R0, "filters"), [_filter("CORS", "cors", {"allowOrigins": ["*", "https://a.b"]})],
         "spec.rules[0].filters[0].cors.allowOrigins", "cannot be combined"),
        ((*R0, "filters"), [_filter("CORS", "cors", {"allowMethods": ["FETCH"]})],
         "spec.rules[0].filters[0].cors.allowMethods[0]", "must be one of"),
        ((*R0, "filters"), [_filter("CORS", "cors", {"maxAge": 0})],
         "spec.rules[0].filters[0].cors.maxAge", "at least 1"),
        ((*R0, "filters"), [_filter("ExternalAuth", "externalAuth",
                                    {"protocol": "HTTP", "backendRef": {"name": "auth"},
                                     "grpc": {}})],
         "spec.rules[0].filters[0].externalAuth.grpc", "unless protocol is GRPC"),
        ((*R0, "filters"), [_filter("ExternalAuth", "externalAuth",
                                    {"protocol": "GRPC", "backendRef": {"name": "auth"},
                                     "http": {}})],
         "spec.rules[0].filters[0].externalAuth.http", "unless protocol is HTTP"),
        ((*R0, "filters"), [_filter("ExtensionRef", "extensionRef", {"group": "x.io"})],
         "spec.rules[0].filters[0].extensionRef.kind", "required field"),
        # backendRefs
        ((*B0, "weight"), -1, "spec.rules[0].backendRefs[0].weight", "between 0 and 1000000"),
        ((*B0, "weight"), 1_000_001, "spec.rules[0].backendRefs[0].weight",
         "between 0 and 1000000"),
        ((*B0, "wieght"), 3, "spec.rules[0].backendRefs[0].wieght", 'did you mean "weight"'),
        ((*B0, "name"), DELETE, "spec.rules[0].backendRefs[0].name", "required field"),
        ((*B0, "port"), 0, "spec.rules[0].backendRefs[0].port", "between 1 and 65535"),
        ((*B0, "namespace"), "Team", "spec.rules[0].backendRefs[0].namespace",
         "not a valid namespace"),
        ((*B0, "filters"), [_filter("URLRewrite", "urlRewrite", {})] * 2,
         "spec.rules[0].backendRefs[0].filters[1].type", "cannot be repeated"),
        ((*R0, "backendRefs"), [POOL_REF] * 17, "spec.rules[0].backendRefs", "at most 16"),
        # timeouts, retry, session persistence
        ((*R0, "timeouts"), {"request": "10"}, "spec.rules[0].timeouts.request",
         "not a Gateway API duration"),
        ((*R0, "timeouts"), {"request": 10}, "spec.rules[0].timeouts.request",
         "must be a string"),
        ((*R0, "timeouts"), {"request": "1h1m1s1ms1s"}, "spec.rules[0].timeouts.request",
         "not a Gateway API duration"),
        ((*R0, "timeouts"), {"request": "10s", "backendRequest": "11s"},
         "spec.rules[0].timeouts.backendRequest", "cannot be longer than request"),
        ((*R0, "timeouts"), {"requests": "10s"}, "spec.rules[0].timeouts.requests",
         'did you mean "request"'),
        ((*R0, "retry"), {"codes": [500, 600]}, "spec.rules[0].retry.codes[1]",
         "not between 400 and 599"),
        ((*R0, "retry"), {"attempts": -1}, "spec.rules[0].retry.attempts",
         "must be between 0 and 10"),
        ((*R0, "retry"), {"attempts": 11}, "spec.rules[0].retry.attempts",
         "must be between 0 and 10 (got 11)"),
        ((*R0, "retry"), {"backoff": "soon"}, "spec.rules[0].retry.backoff",
         "not a Gateway API duration"),
        ((*R0, "sessionPersistence"), {"type": "Query"}, "spec.rules[0].sessionPersistence.type",
         "must be one of"),
        ((*R0, "sessionPersistence"), {"idleTimeout": "1d"},
         "spec.rules[0].sessionPersistence.idleTimeout", "not a Gateway API duration"),
        # route level
        (("spec", "rules"), [{"name": "a", "backendRefs": [POOL_REF]}] * 2,
         "spec.rules[1].name", 'duplicate rule name "a"'),
        (("spec", "rules"), [{"backendRefs": [POOL_REF]}] * 17, "spec.rules", "at most 16"),
        (("spec", "rules"), [], "spec.rules", "must not be empty"),
        (("spec", "rules"), [{"matches": [{}] * 64, "backendRefs": [POOL_REF]}] * 3,
         "spec.rules", "at most 128 matches in total"),
        (("spec", "parentRefs", 1), {"name": "gw"}, "spec.parentRefs[1]",
         "duplicate of parentRefs[0]"),
        (("spec", "parentRefs", 0, "sectionName"), "Http", "spec.parentRefs[0].sectionName",
         "not a valid name"),
        (("spec", "hostnames"), ["10.0.0.1"], "spec.hostnames[0]", "not a valid hostname"),
        (("spec", "hostnames"), ["a.example.com:80"], "spec.hostnames[0]",
         "not a valid hostname"),
        (("spec", "useDefaultGateways"), "Some", "spec.useDefaultGateways", "must be one of"),
    ],
)
def test_route_field_errors(world: World, path: tuple[Any, ...], value: Any, where: str,
                            fragment: str) -> None:
    world.expect(world.errors([("route", path, value)]), where, fragment)


def test_rule_defaults_follow_upstream(world: World) -> None:
    rule = {"backendRefs": [POOL_REF]}
    bundle = world.load([("route", ("spec", "rules"), [rule, {**rule, "matches": []}])])
    first, second = bundle.http_routes[0].spec.rules
    assert first.matches == second.matches == [HTTPRouteMatch()]
    assert first.matches[0].path.type == "PathPrefix"
    assert first.matches[0].path.value == "/"
    assert first.backend_refs[0].weight == 1
    assert first.timeouts is None


def test_default_rules_when_absent(world: World) -> None:
    # Upstream defaults a missing rules list to one catch-all rule, which then has no backends.
    found = world.errors([("route", ("spec", "rules"), DELETE)])
    world.expect(found, "spec.rules[0]", "the rule has no backendRefs")


@pytest.mark.parametrize(
    ("timeouts", "whole", "backend"),
    [
        ({"request": "10s"}, 10.0, None),
        ({"request": "1h30m", "backendRequest": "500ms"}, 5400.0, 0.5),
        ({"request": "0s", "backendRequest": "99999h"}, 0.0, 99999 * 3600.0),
        ({"backendRequest": "1m1s"}, None, 61.0),
    ],
)
def test_timeouts_parse_to_seconds(world: World, timeouts: dict[str, str], whole: float | None,
                                   backend: float | None) -> None:
    bundle = world.load([("route", (*R0, "timeouts"), timeouts)])
    parsed = bundle.http_routes[0].spec.rules[0].timeouts
    assert parsed is not None
    assert parsed.request_seconds == whole
    assert parsed.backend_request_seconds == backend


@pytest.mark.parametrize(
    ("matches", "filter_path"),
    [
        ([{"path": {"type": "Exact", "value": "/v1"}}], (*R0, "filters")),
        ([{"path": {"value": "/a"}}, {"path": {"value": "/b"}}], (*R0, "filters")),
        ([{"path": {"type": "RegularExpression", "value": "/v.*"}}], (*B0, "filters")),
    ],
)
def test_prefix_rewrite_needs_one_prefix_match(world: World, matches: list[dict[str, Any]],
                                               filter_path: tuple[Any, ...]) -> None:
    found = world.errors([("route", (*R0, "matches"), matches),
                          ("route", filter_path, [REWRITE_PREFIX])])
    where = "spec.rules[0].filters[0]" if len(filter_path) == 4 else (
        "spec.rules[0].backendRefs[0].filters[0]")
    world.expect(found, where, "needs exactly one match, of type PathPrefix")


def test_retry_backoff_in_seconds(world: World) -> None:
    retry = {"codes": [503], "attempts": 2, "backoff": "250ms"}
    bundle = world.load([("route", (*R0, "retry"), retry)])
    parsed = bundle.http_routes[0].spec.rules[0].retry
    assert parsed is not None
    assert parsed.backoff_seconds == 0.25


def test_prefix_rewrite_with_one_prefix_match_is_valid(world: World) -> None:
    bundle = world.load([("route", (*R0, "filters"), [REWRITE_PREFIX])])
    rule = bundle.http_routes[0].spec.rules[0]
    assert rule.filters[0].url_rewrite is not None
    assert rule.filters[0].settings is rule.filters[0].url_rewrite


def test_redirect_rule_without_backends_is_valid(world: World) -> None:
    rule = {"filters": [_filter("RequestRedirect", "requestRedirect",
                                {"scheme": "https", "statusCode": 301})]}
    patches = [("route", ("spec", "rules", 1), rule)]
    world.expect(world.warnings(patches), "spec.rules[1].filters[0].type", "not implemented yet")


def test_every_upstream_route_field_loads(world: World) -> None:
    rule = {
        "name": "main",
        "matches": [{"path": {"type": "Exact", "value": "/v1/chat/completions"},
                     "headers": [{"type": "RegularExpression", "name": "x-model",
                                  "value": "llama-.*"}],
                     "queryParams": [{"name": "debug", "value": "1"}],
                     "method": "POST"}],
        "filters": [
            _filter("RequestHeaderModifier", "requestHeaderModifier",
                    {"set": [{"name": "x-a", "value": "1"}], "add": [{"name": "x-b", "value": "2"}],
                     "remove": ["x-c"]}),
            _filter("ResponseHeaderModifier", "responseHeaderModifier", {"remove": ["server"]}),
            _filter("URLRewrite", "urlRewrite", {"hostname": "backend.local",
                                                 "path": {"type": "ReplaceFullPath",
                                                          "replaceFullPath": "/v1/completions"}}),
        ],
        "backendRefs": [{**POOL_REF, "weight": 0, "port": 8000, "namespace": "default"},
                        {**POOL_REF, "weight": 3}],
        "timeouts": {"request": "30s", "backendRequest": "10s"},
    }
    spec = {"parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                            "name": "gw", "sectionName": "http", "port": 8080}],
            "hostnames": ["*.example.com", "api.local"], "rules": [rule]}
    bundle = world.load([("route", ("spec",), spec)])
    assert bundle.http_routes[0].spec.rules[0].name == "main"
    assert world.warnings([("route", ("spec",), spec)]) == []

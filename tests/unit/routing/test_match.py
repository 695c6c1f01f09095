import re

import pytest

from inferlane.routing.match import (
    RequestFacts,
    RouteTable,
    RuleMatch,
    ValueMatcher,
    hostname_matches,
)

MODEL = "x-gateway-model-name"


def facts(path: str = "/v1/chat/completions", method: str = "POST", host: str = "gw",
          **headers: str) -> RequestFacts:
    return RequestFacts(method=method, path=path, host=host,
                        headers={k.replace("_", "-"): v for k, v in headers.items()})


@pytest.mark.parametrize(
    ("path_type", "value", "path", "expected"),
    [
        ("PathPrefix", "/", "/anything", True),
        ("PathPrefix", "/v1", "/v1", True),
        ("PathPrefix", "/v1", "/v1/chat/completions", True),
        ("PathPrefix", "/v1/", "/v1/chat", True),
        ("PathPrefix", "/v1", "/v10/chat", False),
        ("PathPrefix", "/v1/chat", "/v1/completions", False),
        ("Exact", "/v1/completions", "/v1/completions", True),
        ("Exact", "/v1/completions", "/v1/completions/", False),
        ("RegularExpression", r"/v1/(chat/)?completions", "/v1/chat/completions", True),
        ("RegularExpression", r"/v1/(chat/)?completions", "/v1/embeddings", False),
    ],
)
def test_path_matching(path_type: str, value: str, path: str, expected: bool) -> None:
    regex = re.compile(value) if path_type == "RegularExpression" else None
    match = RuleMatch(path_type=path_type, path_value=value, path_regex=regex)  # type: ignore[arg-type]
    assert match.matches(facts(path=path)) is expected


@pytest.mark.parametrize(
    ("matcher", "headers", "expected"),
    [
        (ValueMatcher(MODEL, "llama"), {MODEL: "llama"}, True),
        (ValueMatcher(MODEL, "llama"), {MODEL: "llama-2"}, False),
        (ValueMatcher(MODEL, "llama"), {}, False),
        (ValueMatcher(MODEL, "llama.*", re.compile("llama.*")), {MODEL: "llama-2"}, True),
        (ValueMatcher(MODEL, "llama", re.compile("llama")), {MODEL: "xllama"}, False),
    ],
)
def test_header_matching(matcher: ValueMatcher, headers: dict[str, str], expected: bool) -> None:
    assert matcher.matches(headers) is expected


def test_method_and_query_matching() -> None:
    match = RuleMatch(method="POST", query=(ValueMatcher("api-version", "1"),))
    assert match.matches(RequestFacts("POST", "/", query={"api-version": "1"}))
    assert not match.matches(RequestFacts("GET", "/", query={"api-version": "1"}))
    assert not match.matches(RequestFacts("POST", "/", query={}))


@pytest.mark.parametrize(
    ("patterns", "host", "expected"),
    [
        ((), "anything", True),
        (("api.example.com",), "api.example.com:8080", True),
        (("api.example.com",), "API.example.com", True),
        (("api.example.com",), "other.example.com", False),
        (("*.example.com",), "a.example.com", True),
        (("*.example.com",), "a.b.example.com", True),
        (("*.example.com",), "example.com", False),
        (("::1",), "[::1]:8080", True),
    ],
)
def test_hostname_matching(patterns: tuple[str, ...], host: str, expected: bool) -> None:
    assert hostname_matches(patterns, host) is expected


def test_precedence_follows_gateway_api_order() -> None:
    table: RouteTable[str] = RouteTable()
    table.add(RuleMatch(), "catch-all", route_order=0)
    table.add(RuleMatch(path_value="/v1"), "prefix-v1", route_order=1)
    table.add(RuleMatch(path_value="/v1/chat"), "prefix-v1-chat", route_order=2)
    table.add(RuleMatch("Exact", "/v1/chat/completions"), "exact", route_order=3)
    table.add(RuleMatch(path_value="/v1", headers=(ValueMatcher(MODEL, "llama"),)),
              "prefix-v1-llama", route_order=4)
    table.add(RuleMatch(path_value="/v1", method="POST"), "prefix-v1-post", route_order=5)

    def winner(request: RequestFacts) -> str | None:
        hit = table.match(request)
        return hit[1] if hit else None

    assert winner(facts("/v1/chat/completions")) == "exact"
    assert winner(facts("/v1/chat/other")) == "prefix-v1-chat"
    # Same prefix: the method match outranks header matches.
    assert winner(facts("/v1/embeddings", x_gateway_model_name="llama")) == "prefix-v1-post"
    assert winner(facts("/v1/embeddings", method="GET", x_gateway_model_name="llama")) == (
        "prefix-v1-llama"
    )
    assert winner(facts("/v1/embeddings", method="GET")) == "prefix-v1"
    assert winner(facts("/other")) == "catch-all"


def test_more_headers_win_then_older_route() -> None:
    table: RouteTable[str] = RouteTable()
    one = (ValueMatcher(MODEL, "llama"),)
    two = (ValueMatcher(MODEL, "llama"), ValueMatcher("x-tenant", "a"))
    table.add(RuleMatch(headers=one), "newer-one-header", route_order=2)
    table.add(RuleMatch(headers=one), "older-one-header", route_order=1)
    table.add(RuleMatch(headers=two), "two-headers", route_order=3)
    hit = table.match(facts(x_gateway_model_name="llama", x_tenant="a"))
    assert hit is not None
    assert hit[1] == "two-headers"
    hit = table.match(facts(x_gateway_model_name="llama"))
    assert hit is not None
    assert hit[1] == "older-one-header"
    assert table.match(facts(x_gateway_model_name="qwen")) is None


def test_route_hostnames_restrict_matches() -> None:
    table: RouteTable[str] = RouteTable()
    table.add(RuleMatch(), "internal", hostnames=["internal.example.com"])
    assert table.match(facts(host="internal.example.com")) is not None
    assert table.match(facts(host="public.example.com")) is None

"""Provider and TrafficPolicy resources: field errors, cross-resource checks, warnings, and what
the build makes of them (backends, mirrors, sticky header, FailurePolicy, credentials)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from inferlane.config.build import build_snapshot
from inferlane.errors import ConfigError
from inferlane.providers.runtime import Secret
from inferlane.routing.backends import pool_ref, provider_ref
from inferlane.routing.cooldown import CooldownConfig
from inferlane.routing.failures import FailureClass
from inferlane.routing.resilience import (
    ALL_FALLBACK_TRIGGERS,
    FailurePolicy,
    MirrorTarget,
    RetryRules,
)
from inferlane.routing.router import GatewaySnapshot
from inferlane.routing.rules import CompiledRule

if TYPE_CHECKING:
    from conftest import World

ENV = "INFERLANE_TEST_OAI_KEY"
R0 = ("spec", "rules", 0)
POOL_REF = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool"}
OAI_REF = {"group": "inferlane.dev", "kind": "Provider", "name": "oai"}
CLAUDE_REF = {"group": "inferlane.dev", "kind": "Provider", "name": "claude"}
ROUTE_TARGET = {"kind": "HTTPRoute", "name": "route"}


def provider(name: str = "oai", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "inferlane.dev/v1alpha1", "kind": "Provider", "metadata": metadata,
            "spec": spec or {"type": "openai", "credentials": {"fromEnv": ENV}}}


def policy(name: str = "tp", **spec: Any) -> dict[str, Any]:
    spec.setdefault("targetRefs", [ROUTE_TARGET])
    return {"apiVersion": "inferlane.dev/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": name}, "spec": spec}


def to_backends(*refs: dict[str, Any]) -> tuple[str, tuple[Any, ...], Any]:
    return ("route", (*R0, "backendRefs"), list(refs))


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(ENV, "sk-test-key")
    return ENV


def compiled_rules(snapshot: GatewaySnapshot) -> list[CompiledRule]:
    """The compiled rules of the first listener, by rule index (a rule with several matches is
    in the table several times)."""
    unique = {(r.route, r.rule_index): r for r in snapshot.listeners[0].routes.targets()}
    return [unique[k] for k in sorted(unique)]


def build_rules(world: World, patches: list[Any], extra: list[dict[str, Any]]
                ) -> list[CompiledRule]:
    return compiled_rules(build_snapshot(world.load(patches, extra)))


# -- Provider: field errors --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("spec", "where", "fragment"),
    [
        ({"type": "openai"}, "spec.credentials", "type openai needs an API key"),
        ({"type": "anthropic"}, "spec.credentials", "type anthropic needs an API key"),
        ({"type": "azure-openai", "baseURL": "https://r.openai.azure.com",
          "azure": {"apiVersion": "2024-10-21"}}, "spec.credentials", "needs an API key"),
        ({"type": "azure-openai", "credentials": {"fromEnv": "K"},
          "azure": {"apiVersion": "2024-10-21"}}, "spec.baseURL",
         "is required for type azure-openai"),
        ({"type": "openai-compatible"}, "spec.baseURL", "is required for type openai-compatible"),
        ({"type": "azure-openai", "baseURL": "https://r.openai.azure.com",
          "credentials": {"fromEnv": "K"}}, "spec.azure",
         "is required for type azure-openai (azure.apiVersion)"),
        ({"type": "azure-openai", "baseURL": "https://r.openai.azure.com",
          "credentials": {"fromEnv": "K"}, "azure": {}}, "spec.azure.apiVersion", ""),
        ({"type": "azure-openai", "baseURL": "https://r.openai.azure.com",
          "credentials": {"fromEnv": "K"},
          "azure": {"apiVersion": "2024-10-21", "deployment": "a/b"}},
         "spec.azure.deployment", "pattern"),
        ({"type": "openai", "credentials": {"fromEnv": "K"}, "azure": {"apiVersion": "1"}},
         "spec.azure", "only applies to type azure-openai"),
        ({"type": "openai", "credentials": {"fromEnv": "K"}, "anthropic": {}},
         "spec.anthropic", "only applies to type anthropic"),
        ({"type": "anthropic", "credentials": {"fromEnv": "K"},
          "anthropic": {"version": "june"}}, "spec.anthropic.version", "pattern"),
        ({"type": "anthropic", "credentials": {"fromEnv": "K"},
          "anthropic": {"defaultMaxTokens": 0}}, "spec.anthropic.defaultMaxTokens", ""),
        ({"type": "openai", "credentials": {"fromEnv": "K", "fromFile": "/run/key"}},
         "spec.credentials", "set exactly one of fromEnv or fromFile"),
        ({"type": "openai", "credentials": {}}, "spec.credentials",
         "set exactly one of fromEnv or fromFile"),
        ({"type": "openai", "credentials": {"fromEnv": "1BAD-NAME"}},
         "spec.credentials.fromEnv", "pattern"),
        ({"type": "openai", "credentials": {"fromEnv": "K"},
          "baseURL": "https://user:pass@api.example.com/v1"}, "spec.baseURL",
         "the URL carries credentials"),
        ({"type": "openai", "credentials": {"fromEnv": "K"},
          "baseURL": "https://sk-abc@api.example.com/v1"}, "spec.baseURL",
         "the URL carries credentials"),
        ({"type": "openai", "credentials": {"fromEnv": "K"},
          "baseURL": "https://api.example.com/v1?key=sk-abc"}, "spec.baseURL",
         "must not have a query or fragment"),
        ({"type": "openai", "credentials": {"fromEnv": "K"},
          "baseURL": "https://api.example.com/v1#x"}, "spec.baseURL",
         "must not have a query or fragment"),
        ({"type": "openai", "credentials": {"fromEnv": "K"}, "baseURL": "ftp://h/v1"},
         "spec.baseURL", "is not an http:// or https:// URL with a host"),
        ({"type": "openai", "credentials": {"fromEnv": "K"}, "baseURL": "https:///v1"},
         "spec.baseURL", "is not an http:// or https:// URL with a host"),
        ({"type": "openai", "credentials": {"fromEnv": "K"}, "baseURL": "https://h:70000"},
         "spec.baseURL", "has an invalid port"),
        *[({"type": "openai", "credentials": {"fromEnv": "K"},
            "headers": [{"name": "X-Ok", "value": "1"}, {"name": name, "value": "x"}]},
           "spec.headers[1].name", "is set by the provider adapter")
          for name in ("Authorization", "api-key", "X-API-Key", "anthropic-version", "Host",
                       "Content-Length", "content-type")],
        ({"type": "openai", "credentials": {"fromEnv": "K"}, "contextWindow": 0},
         "spec.contextWindow", ""),
        ({"type": "openai", "credentials": {"fromEnv": "K"}, "timeouts": {"connect": "soon"}},
         "spec.timeouts.connect", "not a Gateway API duration"),
        ({"type": "gemini"}, "spec.type", 'must be one of "openai"'),
        ({"type": "openai", "credentials": {"fromEnv": "K"}, "apiKey": "sk-abc"},
         "spec.apiKey", ""),
    ],
)
def test_provider_field_errors(world: World, spec: dict[str, Any], where: str,
                               fragment: str) -> None:
    world.expect(world.errors([], [provider(**spec)]), where, fragment)


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "openai", "credentials": {"fromEnv": "K"}},
        {"type": "openai", "credentials": {"fromFile": "/run/secrets/openai"}},
        {"type": "anthropic", "credentials": {"fromEnv": "K"},
         "anthropic": {"version": "2026-10-21", "defaultMaxTokens": 1024}},
        {"type": "azure-openai", "baseURL": "https://r.openai.azure.com/",
         "credentials": {"fromEnv": "K"},
         "azure": {"apiVersion": "2024-10-21", "deployment": "gpt-4o.prod_1"}},
        {"type": "openai-compatible", "baseURL": "http://10.0.0.7:8000/v1",
         "headers": [{"name": "X-Team", "value": "search"}], "contextWindow": 32768,
         "timeouts": {"connect": "2s", "request": "5m"}, "modelNameOverride": "llama"},
    ],
)
def test_valid_providers(world: World, spec: dict[str, Any]) -> None:
    bundle = world.load([to_backends(OAI_REF)], [provider(**spec)])
    (loaded,) = bundle.providers
    assert loaded.spec.type == spec["type"]
    assert not loaded.spec.url.endswith("/")


# -- Provider: warnings ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("spec", "where", "fragment"),
    [
        ({"type": "openai-compatible", "baseURL": "https://h:8443",
          "tls": {"insecureSkipVerify": True}}, "spec.tls.insecureSkipVerify",
         "TLS certificate is not verified"),
        ({"type": "openai-compatible", "baseURL": "http://h:8000/v1",
          "credentials": {"fromEnv": "K"}}, "spec.baseURL",
         "the API key is sent over plain http"),
        ({"type": "openai", "baseURL": "http://proxy.local/v1",
          "credentials": {"fromFile": "/k"}}, "spec.baseURL", "sent over plain http"),
    ],
)
def test_provider_warnings(world: World, spec: dict[str, Any], where: str,
                           fragment: str) -> None:
    world.expect(world.warnings([to_backends(OAI_REF)], [provider(**spec)]), where, fragment)


def test_plain_http_without_a_key_is_no_warning(world: World) -> None:
    found = world.warnings([to_backends(POOL_REF, OAI_REF)], [provider(
        type="openai-compatible", baseURL="http://10.0.0.7:8000/v1")])
    assert found == []


def test_plain_http_warning_ignores_the_scheme_case(world: World) -> None:
    found = world.warnings([to_backends(OAI_REF)], [provider(
        type="openai-compatible", baseURL="HTTP://10.0.0.7:8000/v1",
        credentials={"fromEnv": "K"})])
    world.expect(found, "spec.baseURL", "sent over plain http")


def test_unreferenced_provider_warns(world: World) -> None:
    world.expect(world.warnings([], [provider()]), "metadata.name",
                 "no HTTPRoute or TrafficPolicy names this provider: it receives no traffic")


@pytest.mark.parametrize(
    ("patches", "extra"),
    [
        pytest.param([to_backends(POOL_REF, OAI_REF)], [], id="split"),
        pytest.param([("route", (*R0, "filters"), [{"type": "RequestMirror", "requestMirror": {
            "backendRef": OAI_REF}}])], [], id="mirror"),
        pytest.param([], [policy(fallback={"backendRefs": [OAI_REF]})], id="fallback"),
    ],
)
def test_a_referenced_provider_does_not_warn(world: World, patches: list[Any],
                                             extra: list[dict[str, Any]]) -> None:
    assert world.warnings(patches, [provider(), *extra]) == []


def test_a_reference_to_a_same_named_provider_elsewhere_does_not_count(world: World) -> None:
    other = provider(namespace="other")
    found = world.warnings([to_backends(POOL_REF, {**OAI_REF, "namespace": "other"})],
                           [provider(), other])
    names = [(p, m) for p, m in found if "receives no traffic" in m]
    assert len(names) == 1  # default/oai; other/oai is referenced


# -- TrafficPolicy: checks ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("patches", "docs", "where", "fragment"),
    [
        ([], [policy(targetRefs=[{"kind": "HTTPRoute", "name": "nope"}])],
         "spec.targetRefs[0].name", 'HTTPRoute "default/nope" not found'),
        ([], [policy(targetRefs=[{"kind": "HTTPRoute", "name": "rout"}])],
         "spec.targetRefs[0].name", 'did you mean "route"'),
        ([], [policy(targetRefs=[{**ROUTE_TARGET, "group": "example.com"}])],
         "spec.targetRefs[0].group", "targets are HTTPRoutes of group gateway.networking.k8s.io"),
        ([], [policy(targetRefs=[{"kind": "Gateway", "name": "gw"}])],
         "spec.targetRefs[0].kind", ""),
        ([], [policy(targetRefs=[{**ROUTE_TARGET, "sectionName": "main"}])],
         "spec.targetRefs[0].sectionName",
         'HTTPRoute route has no rule named "main" (rule names: none of its rules has a name)'),
        ([("route", (*R0, "name"), "chat")],
         [policy(targetRefs=[{**ROUTE_TARGET, "sectionName": "main"}])],
         "spec.targetRefs[0].sectionName", "(rule names: chat)"),
        ([], [policy(), policy("tp2")], "spec.targetRefs[0]",
         "already targeted by TrafficPolicy tp: one policy per route or rule"),
        ([("route", (*R0, "name"), "chat")],
         [policy(targetRefs=[{**ROUTE_TARGET, "sectionName": "chat"}]),
          policy("tp2", targetRefs=[{**ROUTE_TARGET, "sectionName": "chat"}])],
         "spec.targetRefs[0]", "already targeted by TrafficPolicy tp"),
        ([], [policy(targetRefs=[])], "spec.targetRefs", ""),
        ([], [policy(fallback={"backendRefs": [OAI_REF]})],
         "spec.fallback.backendRefs[0].name", 'Provider "default/oai" not found'),
        ([], [policy(fallback={"backendRefs": [POOL_REF, {**POOL_REF, "name": "pool-2"}]})],
         "spec.fallback.backendRefs[1].name", 'InferencePool "default/pool-2" not found'),
        ([], [policy(fallback={"backendRefs": [{"name": "svc"}]})],
         "spec.fallback.backendRefs[0].kind", 'backendRef to Service "svc" is not supported'),
        ([], [policy(fallback={"backendRefs": [{**OAI_REF, "group": ""}]})],
         "spec.fallback.backendRefs[0].group", 'must be "inferlane.dev" for a Provider'),
        ([], [policy(fallback={"backendRefs": []})], "spec.fallback.backendRefs",
         "must not be empty"),
        ([], [policy(fallback={"backendRefs": [POOL_REF], "on": ["503"]})],
         "spec.fallback.on[0]", 'must be one of "connect-failure"'),
        ([], [policy(cooldown={"duration": "60s", "maxDuration": "30s"})],
         "spec.cooldown.maxDuration", "must not be shorter than duration"),
        ([], [policy(cooldown={"failureRatio": 1})], "spec.cooldown.failureRatio",
         "out of range"),
        ([], [policy(retry={"budget": {"percent": 101}})], "spec.retry.budget.percent", ""),
        ([], [policy(mirror={"maxConcurrent": 0})], "spec.mirror.maxConcurrent", ""),
    ],
)
def test_traffic_policy_errors(world: World, patches: list[Any], docs: list[dict[str, Any]],
                               where: str, fragment: str) -> None:
    world.expect(world.errors(patches, docs), where, fragment)


def test_a_route_policy_and_a_rule_policy_may_coexist(world: World) -> None:
    patches = [("route", (*R0, "name"), "chat")]
    docs = [policy(), policy("rule", targetRefs=[{**ROUTE_TARGET, "sectionName": "chat"}])]
    assert world.errors(patches, docs) == []


# -- build: backends, mirrors, sticky header ---------------------------------------------------

def test_weighted_backend_refs_to_a_pool_and_a_provider(world: World, key_env: str) -> None:
    patches = [to_backends({**POOL_REF, "weight": 3}, {**OAI_REF, "weight": 1},
                           {**CLAUDE_REF, "weight": 0})]
    docs = [provider(), provider("claude", type="anthropic", credentials={"fromEnv": key_env})]
    (rule,) = build_rules(world, patches, docs)
    assert rule.backends.items == (pool_ref("default/pool"), provider_ref("default/oai"))
    assert rule.backends.share(pool_ref("default/pool")) == 0.75
    assert rule.backends.share(provider_ref("default/oai")) == 0.25


@pytest.mark.parametrize(
    ("mirror", "fraction"),
    [({}, 1.0), ({"percent": 25}, 0.25), ({"percent": 0}, 0.0), ({"percent": 100}, 1.0),
     ({"fraction": {"numerator": 1, "denominator": 3}}, 1 / 3),
     ({"fraction": {"numerator": 5}}, 0.05)],
)
def test_request_mirror_fraction(world: World, key_env: str, mirror: dict[str, Any],
                                 fraction: float) -> None:
    patches = [("route", (*R0, "filters"), [{"type": "RequestMirror", "requestMirror": {
        "backendRef": OAI_REF, **mirror}}])]
    (rule,) = build_rules(world, patches, [provider()])
    assert rule.mirrors == (MirrorTarget(provider_ref("default/oai"), pytest.approx(fraction)),)


def test_two_mirrors_to_a_pool_and_a_provider(world: World, key_env: str) -> None:
    patches = [("route", (*R0, "filters"), [
        {"type": "RequestMirror", "requestMirror": {"backendRef": OAI_REF, "percent": 10}},
        {"type": "RequestMirror", "requestMirror": {"backendRef": POOL_REF}}])]
    (rule,) = build_rules(world, patches, [provider()])
    assert rule.mirrors == (MirrorTarget(provider_ref("default/oai"), 0.1),
                            MirrorTarget(pool_ref("default/pool"), 1.0))


@pytest.mark.parametrize(("persistence", "header"),
                         [(None, None), ({"type": "Header", "sessionName": "X-User-ID"},
                                         "x-user-id")])
def test_session_persistence_header(world: World, persistence: dict[str, Any] | None,
                                    header: str | None) -> None:
    patches = [] if persistence is None else [("route", (*R0, "sessionPersistence"),
                                               persistence)]
    (rule,) = build_rules(world, patches, [])
    assert rule.sticky_header == header


# -- build: FailurePolicy ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("retry", "rules"),
    [
        (None, RetryRules()),
        ({}, RetryRules(attempts=1)),
        ({"attempts": 0}, RetryRules(attempts=0)),
        ({"attempts": 3, "codes": [503, 429, 503], "backoff": "250ms"},
         RetryRules(attempts=3, codes=frozenset({429, 503}), backoff_base=0.25)),
        ({"codes": [500]}, RetryRules(attempts=1, codes=frozenset({500}))),
        ({"backoff": "1s"}, RetryRules(attempts=1, backoff_base=1.0)),
    ],
)
def test_route_retry_without_a_policy(world: World, retry: dict[str, Any] | None,
                                      rules: RetryRules) -> None:
    patches = [] if retry is None else [("route", (*R0, "retry"), retry)]
    (rule,) = build_rules(world, patches, [])
    assert rule.failure == FailurePolicy(retry=rules)
    assert rule.failure.cooldown == CooldownConfig()
    assert rule.failure.policy is None


def test_traffic_policy_becomes_the_failure_policy(world: World, key_env: str) -> None:
    patches = [to_backends(OAI_REF),
               ("route", (*R0, "retry"), {"attempts": 2, "codes": [503], "backoff": "50ms"})]
    docs = [provider(), provider("claude", type="anthropic", credentials={"fromEnv": key_env}),
            policy(fallback={"backendRefs": [CLAUDE_REF, POOL_REF], "on": ["5xx", "429"]},
                   retry={"budget": {"percent": 50, "minRetries": 1},
                          "backoff": {"max": "5s"}, "retryAfterMax": "3s"},
                   cooldown={"window": "30s", "minRequests": 10, "failureRatio": 0.3,
                             "consecutiveFailures": 3, "duration": "10s",
                             "maxDuration": "1m"},
                   mirror={"maxConcurrent": 4, "timeout": "5s"})]
    (rule,) = build_rules(world, patches, docs)
    assert rule.failure == FailurePolicy(
        fallbacks=(provider_ref("default/claude"), pool_ref("default/pool")),
        fallback_on=frozenset({FailureClass.SERVER_ERROR, FailureClass.RATE_LIMITED}),
        retry=RetryRules(attempts=2, codes=frozenset({503}), backoff_base=0.05,
                         backoff_max=5.0, retry_after_max=3.0, budget_percent=50.0,
                         budget_min=1),
        cooldown=CooldownConfig(window=30.0, min_requests=10, failure_ratio=0.3,
                                consecutive_failures=3, duration=10.0, max_duration=60.0),
        mirror_max_concurrent=4, mirror_timeout=5.0, policy="default/tp")


def test_traffic_policy_defaults(world: World) -> None:
    (rule,) = build_rules(world, [], [policy()])
    assert rule.failure == FailurePolicy(
        fallbacks=(), fallback_on=ALL_FALLBACK_TRIGGERS,
        retry=RetryRules(attempts=0, backoff_max=2.0, retry_after_max=1.0,
                         budget_percent=20.0, budget_min=3),
        cooldown=CooldownConfig(), mirror_max_concurrent=16, mirror_timeout=60.0,
        policy="default/tp")


def test_fallback_on_defaults_to_every_trigger(world: World) -> None:
    (rule,) = build_rules(world, [], [policy(fallback={"backendRefs": [POOL_REF]})])
    assert rule.failure.fallbacks == (pool_ref("default/pool"),)
    assert rule.failure.fallback_on == ALL_FALLBACK_TRIGGERS


def test_cooldown_can_be_turned_off(world: World) -> None:
    (rule,) = build_rules(world, [], [policy(cooldown={"enabled": False})])
    assert rule.failure.cooldown is None


@pytest.mark.parametrize("order", ["route-first", "rule-first"])
def test_a_rule_policy_beats_the_route_policy(world: World, order: str) -> None:
    second_rule = {"name": "other", "matches": [{"path": {"type": "PathPrefix",
                                                          "value": "/v2"}}],
                   "backendRefs": [POOL_REF]}
    patches = [("route", (*R0, "name"), "chat"), ("route", ("spec", "rules", 1), second_rule)]
    whole = policy("whole", retry={"retryAfterMax": "2s"})
    rule_level = policy("chat", targetRefs=[{**ROUTE_TARGET, "sectionName": "chat"}],
                        retry={"retryAfterMax": "7s"})
    docs = [whole, rule_level] if order == "route-first" else [rule_level, whole]
    chat, other = build_rules(world, patches, docs)
    assert (chat.rule_name, chat.failure.policy) == ("chat", "default/chat")
    assert chat.failure.retry.retry_after_max == 7.0
    assert (other.rule_name, other.failure.policy) == ("other", "default/whole")
    assert other.failure.retry.retry_after_max == 2.0


def test_a_rule_policy_leaves_other_rules_at_the_defaults(world: World) -> None:
    second_rule = {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
                   "backendRefs": [POOL_REF]}
    patches = [("route", (*R0, "name"), "chat"), ("route", ("spec", "rules", 1), second_rule)]
    docs = [policy(targetRefs=[{**ROUTE_TARGET, "sectionName": "chat"}])]
    chat, unnamed = build_rules(world, patches, docs)
    assert chat.failure.policy == "default/tp"
    assert unnamed.failure == FailurePolicy()


# -- build: provider credentials ---------------------------------------------------------------

def test_build_reads_provider_credentials(world: World, key_env: str) -> None:
    snapshot = build_snapshot(world.load([to_backends(OAI_REF)], [provider()]))
    runtime = snapshot.providers["default/oai"]
    assert runtime.credential == Secret("sk-test-key")
    assert runtime.host == "api.openai.com"


def test_build_with_a_missing_key_is_a_config_error(world: World,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("INFERLANE_TEST_CLAUDE_KEY", raising=False)
    docs = [provider(), provider("claude", type="anthropic",
                                 credentials={"fromEnv": "INFERLANE_TEST_CLAUDE_KEY"})]
    bundle = world.load([to_backends(OAI_REF, CLAUDE_REF)], docs)
    with pytest.raises(ConfigError) as caught:
        build_snapshot(bundle)
    issues = caught.value.issues
    assert [(i.kind, i.name, i.path) for i in issues] == [
        ("Provider", "oai", "spec.credentials.fromEnv"),
        ("Provider", "claude", "spec.credentials.fromEnv")]
    assert issues[0].message == f"environment variable {ENV} is not set or empty"
    assert issues[0].file == "test.yaml"
    assert f"Provider/oai: spec.credentials.fromEnv: environment variable {ENV}" \
        in str(caught.value)

    snapshot = build_snapshot(bundle, resolve_secrets=False)
    assert snapshot.providers["default/oai"].credential is None
    assert snapshot.providers["default/claude"].credential is None
    assert bundle.providers[0].spec.credentials is not None  # the bundle is not changed


def test_build_with_an_unreadable_key_file(world: World, tmp_path: Any) -> None:
    path = tmp_path / "missing-key"
    bundle = world.load([to_backends(OAI_REF)], [provider(
        type="openai", credentials={"fromFile": str(path)})])
    with pytest.raises(ConfigError) as caught:
        build_snapshot(bundle)
    (issue,) = caught.value.issues
    assert issue.path == "spec.credentials.fromFile"
    assert str(path) in issue.message


def test_a_policy_on_a_broken_route_adds_no_error(world: World) -> None:
    # The route's own error is reported; "not found" on top would be noise.
    found = world.errors([("route", (*R0, "backendRefs", 0, "weight"), -1)], [policy()])
    assert [path for path, _ in found] == ["spec.rules[0].backendRefs[0].weight"]


def test_explicit_null_base_url_takes_the_default(world: World) -> None:
    bundle = world.load([to_backends(OAI_REF)], [provider(
        type="anthropic", baseURL=None, credentials={"fromEnv": "K"})])
    assert bundle.providers[0].spec.url == "https://api.anthropic.com"


def test_other_filters_do_not_reference_a_provider(world: World) -> None:
    patches = [("route", (*R0, "filters"), [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x-debug"]}},
        {"type": "RequestMirror", "requestMirror": {"backendRef": OAI_REF}}])]
    assert world.warnings(patches, [provider()]) == []


def test_policies_apply_only_to_the_route_they_name(world: World) -> None:
    def route(name: str, namespace: str, prefix: str) -> dict[str, Any]:
        doc = world.doc("route", metadata={"name": name, "namespace": namespace})
        doc["spec"]["parentRefs"] = [{"name": "gw", "namespace": "default"}]
        doc["spec"]["rules"][0]["matches"] = [{"path": {"type": "PathPrefix", "value": prefix}}]
        doc["spec"]["rules"][0]["backendRefs"] = [{**POOL_REF, "namespace": "default"}]
        return doc

    team_policy = policy("team-tp")
    team_policy["metadata"]["namespace"] = "team"
    patches = [("gateway", ("spec", "listeners", 0, "allowedRoutes"),
                {"namespaces": {"from": "All"}})]
    docs = [route("route", "team", "/team"), route("other", "default", "/other"),
            team_policy, policy("other-tp", targetRefs=[{"kind": "HTTPRoute", "name": "other"}])]
    by_route = {rule.route: rule.failure.policy for rule in build_rules(world, patches, docs)}
    assert by_route == {"default/route": None, "default/other": "default/other-tp",
                        "team/route": "team/team-tp"}


def test_the_bundled_providers_example_loads_and_builds_without_keys() -> None:
    from importlib import resources

    from inferlane.config.build import build_snapshot
    from inferlane.config.loader import load_config_text
    from inferlane.routing.backends import BackendKind

    text = resources.files("inferlane").joinpath("examples/providers.yaml").read_text()
    bundle = load_config_text(text, "providers.yaml")
    assert bundle.warnings == ()
    snapshot = build_snapshot(bundle, resolve_secrets=False)
    (listener,) = snapshot.listeners
    (rule,) = listener.routes.targets()
    assert {b.kind for b in rule.backends.items} == {BackendKind.POOL, BackendKind.PROVIDER}
    assert [b.label for b in rule.failure.fallbacks] == ["provider/default/openai",
                                                        "provider/default/claude"]
    assert rule.sticky_header == "x-user-id"
    assert [m.fraction for m in rule.mirrors] == [0.1]

"""The health kinds (Monitor, MonitorGroup, HealthCheckPolicy) and ModelServer.weight: field
errors, cross-resource findings, and the PoolHealthSettings the build makes of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from inferlane.config.health_build import build_pool_health, monitor_spec
from inferlane.config.resources import Monitor, parse_status_codes
from inferlane.health.monitors import (
    CodeRange,
    GrpcCheck,
    HttpCheck,
    InferenceCheck,
    MonitorSpec,
    MonitorType,
    TcpCheck,
)
from inferlane.health.outlier import OutlierConfig
from inferlane.health.settings import GATEWAY_REGION, default_settings
from inferlane.health.verdicts import Member, Thresholds

if TYPE_CHECKING:
    from conftest import World

VERSION = "inferlane.dev/v1alpha1"
POOL = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool"}
OTHER_POOL = {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
              "metadata": {"name": "other"},
              "spec": {"selector": {"matchLabels": {"app": "llm"}},
                       "targetPorts": [{"number": 8000}]}}
DURATION_RULE = ('is not a Gateway API duration: use one to four <number><unit> parts with '
                 'units h, m, s, ms, e.g. "10s", "500ms", "1h30m"')
CODE_RULE = ('is not a status code: use a class such as "2xx", a code such as "200" or a '
             'range such as "200-299"')


def monitor(name: str = "mon", **spec: Any) -> dict[str, Any]:
    spec.setdefault("type", "http")
    return {"apiVersion": VERSION, "kind": "Monitor", "metadata": {"name": name}, "spec": spec}


def group(name: str = "grp", *members: dict[str, Any], **spec: Any) -> dict[str, Any]:
    spec["members"] = list(members)
    return {"apiVersion": VERSION, "kind": "MonitorGroup", "metadata": {"name": name},
            "spec": spec}


def member(name: str, **flags: Any) -> dict[str, Any]:
    return {"monitorRef": {"name": name}, **flags}


def policy(name: str = "hp", **spec: Any) -> dict[str, Any]:
    spec.setdefault("targetRefs", [POOL])
    return {"apiVersion": VERSION, "kind": "HealthCheckPolicy", "metadata": {"name": name},
            "spec": spec}


def uses(name: str, kind: str = "Monitor") -> dict[str, Any]:
    """A policy for the baseline pool whose monitorRef names ``name``."""
    return policy(monitorRef={"kind": kind, "name": name})


def issues_of(world: World, extra: list[dict[str, Any]],
              patches: list[Any] | None = None) -> list[tuple[str, str, str]]:
    """``(kind/name, path, message)`` of every error."""
    return [(f"{i.kind}/{i.name}", i.path, i.message)
            for i in world.issues(patches or [], extra)]


def warnings_of(world: World, extra: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(f"{w.kind}/{w.name}", w.path, w.message) for w in world.load(extra=extra).warnings]


# -- field errors ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("extra", "owner", "where", "message"),
    [
        # Monitor
        ([{"apiVersion": VERSION, "kind": "Monitor", "metadata": {"name": "mon"}, "spec": {}}],
         "Monitor/mon", "spec.type", "required field is missing"),
        ([monitor(type="icmp")], "Monitor/mon", "spec.type",
         'must be one of "http", "https", "tcp", "grpc", "inference" (got "icmp")'),
        ([monitor(interval="0s")], "Monitor/mon", "spec.interval", "must be longer than 0s"),
        ([monitor(timeout="0ms")], "Monitor/mon", "spec.timeout", "must be longer than 0s"),
        ([monitor(interval="ten")], "Monitor/mon", "spec.interval", f'"ten" {DURATION_RULE}'),
        ([monitor(interval="1s", timeout="1500ms")], "Monitor/mon", "spec.timeout",
         "must not be longer than interval (1s)"),
        ([monitor(retries=6)], "Monitor/mon", "spec.retries", "must be between 0 and 5 (got 6)"),
        ([monitor(consecutiveUp=0)], "Monitor/mon", "spec.consecutiveUp",
         "must be between 1 and 10 (got 0)"),
        ([monitor(consecutiveDown=11)], "Monitor/mon", "spec.consecutiveDown",
         "must be between 1 and 10 (got 11)"),
        ([monitor(jitter=101)], "Monitor/mon", "spec.jitter",
         "must be between 0 and 100 (got 101)"),
        ([monitor(jitter=0.5)], "Monitor/mon", "spec.jitter", "must be an integer (got 0.5)"),
        ([monitor(port=0)], "Monitor/mon", "spec.port", "must be between 1 and 65535 (got 0)"),
        ([monitor(tcp={})], "Monitor/mon", "spec.tcp", "only allowed when type is tcp"),
        ([monitor(grpc={})], "Monitor/mon", "spec.grpc", "only allowed when type is grpc"),
        ([monitor(inference={})], "Monitor/mon", "spec.inference",
         "only allowed when type is inference"),
        ([monitor(type="tcp", http={})], "Monitor/mon", "spec.http",
         "only allowed when type is http or https"),
        ([monitor(type="grpc", tcp={"send": "x"})], "Monitor/mon", "spec.tcp",
         "only allowed when type is tcp"),
        ([monitor(http={"insecureSkipVerify": True})], "Monitor/mon",
         "spec.http.insecureSkipVerify", "only meaningful for type https"),
        ([monitor(http={"method": "DELETE"})], "Monitor/mon", "spec.http.method",
         'must be one of "GET", "HEAD", "POST", "PUT", "OPTIONS" (got "DELETE")'),
        ([monitor(http={"path": "health"})], "Monitor/mon", "spec.http.path",
         '"health" must start with "/" and contain no spaces'),
        ([monitor(http={"path": "/a b"})], "Monitor/mon", "spec.http.path",
         '"/a b" must start with "/" and contain no spaces'),
        ([monitor(http={"expectedCodes": []})], "Monitor/mon", "spec.http.expectedCodes",
         "must not be empty"),
        ([monitor(http={"expectedCodes": ["2xx", "2XX"]})], "Monitor/mon",
         "spec.http.expectedCodes[1]", f'"2XX" {CODE_RULE}'),
        ([monitor(http={"expectedCodes": ["6xx"]})], "Monitor/mon",
         "spec.http.expectedCodes[0]", f'"6xx" {CODE_RULE}'),
        ([monitor(http={"expectedCodes": ["20"]})], "Monitor/mon",
         "spec.http.expectedCodes[0]", f'"20" {CODE_RULE}'),
        ([monitor(http={"expectedCodes": [200]})], "Monitor/mon",
         "spec.http.expectedCodes[0]", 'must be a string (got 200); quote it: "200"'),
        ([monitor(http={"expectedCodes": ["600"]})], "Monitor/mon",
         "spec.http.expectedCodes[0]", '"600": status codes are 100-599'),
        ([monitor(http={"expectedCodes": ["099-200"]})], "Monitor/mon",
         "spec.http.expectedCodes[0]", '"099-200": status codes are 100-599'),
        ([monitor(http={"expectedCodes": ["299-200"]})], "Monitor/mon",
         "spec.http.expectedCodes[0]", '"299-200": the range is reversed, write "200-299"'),
        ([monitor(http={"headers": [{"name": "X A", "value": "1"}]})], "Monitor/mon",
         "spec.http.headers[0].name", '"X A" is not a valid HTTP header name: use letters, '
                                      "digits and !#$%&'*+-.^_`|~ (no spaces or colons)"),
        ([monitor(http={"headers": [{"name": "X-A", "value": "1"}, {"name": "x-a",
                                                                     "value": "2"}]})],
         "Monitor/mon", "spec.http.headers[1].name", 'header "x-a" is already set by headers[0]'),
        ([monitor(http={"headers": [{"name": f"h{i}", "value": "v"} for i in range(17)]})],
         "Monitor/mon", "spec.http.headers", "must have at most 16 entries (has 17)"),
        ([monitor(http={"expectedBody": "x" * 1025})], "Monitor/mon", "spec.http.expectedBody",
         "must be at most 1024 characters (has 1025)"),
        ([monitor(type="inference", inference={"maxTokens": 65})], "Monitor/mon",
         "spec.inference.maxTokens", "must be between 1 and 64 (got 65)"),
        ([monitor(type="inference", inference={"prompt": ""})], "Monitor/mon",
         "spec.inference.prompt", "must not be empty"),
        ([monitor(type="inference", inference={"path": "v1/chat/completions"})], "Monitor/mon",
         "spec.inference.path", '"v1/chat/completions" must start with "/" and contain no '
                                "spaces"),
        ([monitor(type="inference", inference={"latencyThreshold": "0s"})], "Monitor/mon",
         "spec.inference.latencyThreshold", "must be longer than 0s"),
        ([monitor(type="inference", inference={"latencyThreshold": "3s"})], "Monitor/mon",
         "spec.inference.latencyThreshold",
         "must not be longer than timeout (2s): a slower answer times out first"),
        ([monitor(type="tcp", tcp={"send": "x" * 1025})], "Monitor/mon", "spec.tcp.send",
         "must be at most 1024 characters (has 1025)"),
        ([monitor(unknown=1)], "Monitor/mon", "spec.unknown",
         "unknown field; expected one of: type, interval, timeout, retries, consecutiveUp, "
         "consecutiveDown, jitter, port, http, tcp, grpc, inference"),
        ([monitor(intervall="5s")], "Monitor/mon", "spec.intervall",
         'unknown field (did you mean "interval"?)'),
        # MonitorGroup
        ([group("grp")], "MonitorGroup/grp", "spec.members", "must not be empty"),
        ([group("grp", *[member(f"m{i}") for i in range(17)])], "MonitorGroup/grp",
         "spec.members", "must have at most 16 entries (has 17)"),
        ([monitor(), group("grp", member("mon"), quorumPercent=100)], "MonitorGroup/grp",
         "spec.quorumPercent", "must be between 0 and 99 (got 100)"),
        ([monitor(), group("grp", member("mon", monitoringOnly=True, mustBeHealthy=True))],
         "MonitorGroup/grp", "spec.members[0]",
         "monitoringOnly and mustBeHealthy exclude each other: set at most one"),
        ([monitor(), group("grp", member("mon"), member("mon", enabled=False))],
         "MonitorGroup/grp", "spec.members[1].monitorRef.name",
         'monitor "mon" is already members[0]: list each monitor once'),
        ([monitor(), group("grp", {"monitorRef": {"kind": "MonitorGroup", "name": "mon"}})],
         "MonitorGroup/grp", "spec.members[0].monitorRef.kind",
         'must be one of "Monitor" (got "MonitorGroup"); did you mean "Monitor"?'),
        # HealthCheckPolicy
        ([policy(targetRefs=[])], "HealthCheckPolicy/hp", "spec.targetRefs", "must not be empty"),
        ([policy(targetRefs=[{"kind": "Service", "name": "pool"}])], "HealthCheckPolicy/hp",
         "spec.targetRefs[0].kind", 'must be one of "InferencePool", "BackendSet" (got "Service")'),
        ([policy(targetRefs=[{**POOL, "group": "inference.networking.x-k8s.io"}])],
         "HealthCheckPolicy/hp", "spec.targetRefs[0].group",
         'must be "inference.networking.k8s.io" for kind InferencePool (got '
         '"inference.networking.x-k8s.io")'),
        ([policy(targetRefs=[POOL, {"kind": "InferencePool", "name": "pool"}])],
         "HealthCheckPolicy/hp", "spec.targetRefs[1]", "InferencePool pool is already "
                                                       "targetRefs[0]"),
        ([policy(monitorRef={"kind": "Service", "name": "x"})], "HealthCheckPolicy/hp",
         "spec.monitorRef.kind", 'must be one of "Monitor", "MonitorGroup" (got "Service")'),
        ([policy(monitorRef={"group": "example.com", "name": "x"})], "HealthCheckPolicy/hp",
         "spec.monitorRef.group", 'must be one of "inferlane.dev" (got "example.com")'),
        ([policy(regions=[])], "HealthCheckPolicy/hp", "spec.regions", "must not be empty"),
        ([policy(regions=[f"r{i}" for i in range(9)])], "HealthCheckPolicy/hp", "spec.regions",
         "must have at most 8 entries (has 9)"),
        ([policy(regions=["EU-West"])], "HealthCheckPolicy/hp", "spec.regions[0]",
         '"EU-West" is not a valid region name: use lowercase letters, digits and "-"; start '
         "and end with a letter or digit (at most 63 characters)"),
        ([policy(regions=["gateway", "eu", "gateway"])], "HealthCheckPolicy/hp",
         "spec.regions[2]", 'region "gateway" is already regions[0]'),
        ([policy(regionTimeout="0s")], "HealthCheckPolicy/hp", "spec.regionTimeout",
         "must be longer than 0s"),
        ([policy(minHealthy=-1)], "HealthCheckPolicy/hp", "spec.minHealthy",
         "must be at least 0 (got -1)"),
        ([policy(panicThresholdPercent=101)], "HealthCheckPolicy/hp",
         "spec.panicThresholdPercent", "must be between 0 and 100 (got 101)"),
        ([policy(slowStart="soon")], "HealthCheckPolicy/hp", "spec.slowStart",
         f'"soon" {DURATION_RULE}'),
        ([policy(passive={"consecutiveErrors": 0})], "HealthCheckPolicy/hp",
         "spec.passive.consecutiveErrors", "must be at least 1 (got 0)"),
        ([policy(passive={"maxEjectionPercent": 101})], "HealthCheckPolicy/hp",
         "spec.passive.maxEjectionPercent", "must be between 0 and 100 (got 101)"),
        ([policy(passive={"baseEjectionTime": "0s"})], "HealthCheckPolicy/hp",
         "spec.passive.baseEjectionTime", "must be longer than 0s"),
        ([policy(passive={"baseEjectionTime": "60s", "maxEjectionTime": "30s"})],
         "HealthCheckPolicy/hp", "spec.passive.maxEjectionTime",
         "must not be shorter than baseEjectionTime (60s)"),
    ],
)
def test_field_errors(world: World, extra: list[dict[str, Any]], owner: str, where: str,
                      message: str) -> None:
    found = issues_of(world, extra)
    assert found == [(owner, where, message)]


@pytest.mark.parametrize("weight", [-1, 1001])
def test_model_server_weight_out_of_range(world: World, weight: int) -> None:
    found = issues_of(world, [], [("server", ("spec", "weight"), weight)])
    assert found == [("ModelServer/server", "spec.weight",
                      f"must be between 0 and 1000 (got {weight})")]


def test_model_server_weight_must_be_a_number(world: World) -> None:
    found = issues_of(world, [], [("server", ("spec", "weight"), "5")])
    assert found == [("ModelServer/server", "spec.weight",
                      'must be an integer (got "5"); write the number without quotes')]


@pytest.mark.parametrize(("weight", "expected"), [(None, 1), (0, 0), (1000, 1000)])
def test_model_server_weight(world: World, weight: int | None, expected: int) -> None:
    patches = [] if weight is None else [("server", ("spec", "weight"), weight)]
    (server,) = world.load(patches).model_servers
    assert server.spec.weight == expected


# -- valid documents ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "spec",
    [
        {"type": "http"},
        {"type": "https", "http": {"insecureSkipVerify": True, "followRedirects": True}},
        {"type": "http", "interval": "2s", "timeout": "2s", "retries": 5, "jitter": 0,
         "consecutiveUp": 10, "consecutiveDown": 1, "port": 9000},
        {"type": "http", "http": {"method": "HEAD", "path": "/ready?full=1",
                                  "expectedCodes": ["1xx", "204", "200-399", "599"],
                                  "headers": [{"name": "Host", "value": "llm.local"}]}},
        {"type": "tcp"},
        {"type": "tcp", "tcp": {"expect": "220 "}},
        {"type": "grpc", "grpc": {"service": "inference.Health"}},
        {"type": "inference"},
        {"type": "inference", "timeout": "5s",
         "inference": {"model": "llama", "latencyThreshold": "5s", "maxTokens": 64}},
    ],
)
def test_valid_monitors_load_without_warnings(world: World, spec: dict[str, Any]) -> None:
    bundle = world.load(extra=[monitor(**spec), uses("mon")])
    assert bundle.warnings == ()
    (loaded,) = bundle.monitors
    assert monitor_spec(loaded).type is MonitorType(spec["type"])


@pytest.mark.parametrize(("text", "expected"), [
    ("2xx", (200, 299)), ("5xx", (500, 599)), ("1xx", (100, 199)), ("204", (204, 204)),
    ("200-204", (200, 204)), ("100-599", (100, 599)), ("301-301", (301, 301)),
])
def test_status_codes(text: str, expected: tuple[int, int]) -> None:
    assert parse_status_codes(text) == expected
    assert str(CodeRange(*expected)) == (text if text != "301-301" else "301")


# -- cross-resource findings -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("extra", "owner", "where", "message"),
    [
        ([policy(targetRefs=[{"kind": "InferencePool", "name": "pol"}])], "HealthCheckPolicy/hp",
         "spec.targetRefs[0].name", 'InferencePool "default/pol" not found (did you mean '
                                    '"pool"?)'),
        ([policy(), policy("hp-2")], "HealthCheckPolicy/hp-2", "spec.targetRefs[0]",
         "InferencePool pool is already targeted by HealthCheckPolicy hp: one "
         "HealthCheckPolicy per pool, merge the two"),
        ([OTHER_POOL, policy(targetRefs=[POOL]),
          policy("hp-2", targetRefs=[{"kind": "InferencePool", "name": "other"}, POOL])],
         "HealthCheckPolicy/hp-2", "spec.targetRefs[1]",
         "InferencePool pool is already targeted by HealthCheckPolicy hp: one "
         "HealthCheckPolicy per pool, merge the two"),
        ([monitor("http-health"), uses("http-helth")], "HealthCheckPolicy/hp",
         "spec.monitorRef.name", 'Monitor "default/http-helth" not found (did you mean '
                                 '"http-health"?)'),
        ([monitor("grp"), uses("grp", "MonitorGroup")], "HealthCheckPolicy/hp",
         "spec.monitorRef.name", 'MonitorGroup "default/grp" not found'),
        ([monitor(), group("grp", member("mon"), member("mom")), uses("grp", "MonitorGroup")],
         "MonitorGroup/grp", "spec.members[1].monitorRef.name",
         'Monitor "default/mom" not found (did you mean "mon"?)'),
        ([{**monitor(), "metadata": {"name": "mon", "namespace": "team"}}, uses("mon")],
         "HealthCheckPolicy/hp", "spec.monitorRef.name",
         'Monitor "default/mon" not found (there is one in namespace team: set the '
         "reference's namespace)"),
        ([monitor(), policy(monitorRef={"name": "mon"}, regionTimeout="9s")],
         "HealthCheckPolicy/hp", "spec.regionTimeout",
         "is shorter than the interval of Monitor mon (10s): region votes would go stale "
         "between probes; use at least 3 x the interval (or leave it unset)"),
        ([monitor("fast", interval="3s"), monitor("slow", interval="1m"),
          group("grp", member("fast"), member("slow")),
          policy(monitorRef={"kind": "MonitorGroup", "name": "grp"}, regionTimeout="30s")],
         "HealthCheckPolicy/hp", "spec.regionTimeout",
         "is shorter than the interval of Monitor slow (1m): region votes would go stale "
         "between probes; use at least 3 x the interval (or leave it unset)"),
    ],
)
def test_cross_resource_errors(world: World, extra: list[dict[str, Any]], owner: str,
                               where: str, message: str) -> None:
    found = issues_of(world, extra)
    assert found == [(owner, where, message)]


def test_a_region_timeout_ignores_disabled_members(world: World) -> None:
    extra = [monitor("fast", interval="3s"), monitor("slow", interval="1m"),
             group("grp", member("fast"), member("slow", enabled=False)),
             policy(monitorRef={"kind": "MonitorGroup", "name": "grp"}, regionTimeout="5s")]
    assert world.load(extra=extra).warnings == ()


def test_a_reference_to_a_broken_monitor_is_not_reported_twice(world: World) -> None:
    found = issues_of(world, [monitor(interval="x"), uses("mon")])
    assert found == [("Monitor/mon", "spec.interval", f'"x" {DURATION_RULE}')]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([monitor()], [("Monitor/mon", "metadata.name", "no HealthCheckPolicy or MonitorGroup "
                                                        "uses this Monitor: it probes nothing")]),
        ([monitor(), group("grp", member("mon"))],
         [("MonitorGroup/grp", "metadata.name",
           "no HealthCheckPolicy uses this MonitorGroup: it probes nothing")]),
        ([monitor(), group("grp", member("mon", monitoringOnly=True)),
          uses("grp", "MonitorGroup")],
         [("MonitorGroup/grp", "spec.members",
           "no member is enabled and voting: the group never marks an endpoint unhealthy")]),
        ([monitor(), group("grp", member("mon", enabled=False)), uses("grp", "MonitorGroup")],
         [("MonitorGroup/grp", "spec.members",
           "no member is enabled and voting: the group never marks an endpoint unhealthy")]),
        ([monitor(type="inference"), uses("mon")], []),  # the baseline server lists a model
        ([monitor(type="inference", inference={"model": "m"}), uses("mon")], []),
        ([policy()], []),
    ],
)
def test_warnings(world: World, extra: list[dict[str, Any]],
                  expected: list[tuple[str, str, str]]) -> None:
    assert warnings_of(world, extra) == expected


def test_an_inference_monitor_without_a_model_warns_for_servers_without_one(
        world: World) -> None:
    patches = [("server", ("spec", "models"), [])]
    bundle = world.load(patches, [monitor(type="inference"), uses("mon")])
    assert [(w.kind, w.path, w.message) for w in bundle.warnings] == [
        ("HealthCheckPolicy", "spec.monitorRef",
         "inference Monitor mon names no model and ModelServer server (pool pool) lists none: "
         "its probes of that server fail; set inference.model or the server's models")]


# -- build: Monitor -> MonitorSpec -------------------------------------------------------------

def build_monitor(world: World, **spec: Any) -> MonitorSpec:
    (loaded,) = world.load(extra=[monitor(**spec), uses("mon")]).monitors
    return monitor_spec(loaded)


def test_an_http_monitor_with_defaults(world: World) -> None:
    assert build_monitor(world) == MonitorSpec(
        key="default/mon", type=MonitorType.HTTP, interval=10.0, timeout=2.0, retries=0,
        thresholds=Thresholds(2, 2), jitter=0.1, port=None, http=HttpCheck())


def test_an_https_monitor_with_every_field(world: World) -> None:
    spec = build_monitor(
        world, type="https", interval="30s", timeout="500ms", retries=2, consecutiveUp=3,
        consecutiveDown=4, jitter=25, port=8443,
        http={"method": "POST", "path": "/ready", "headers": [{"name": "Host", "value": "a"}],
              "expectedCodes": ["2xx", "304", "400-404"], "expectedBody": "ok",
              "followRedirects": True, "insecureSkipVerify": True})
    assert spec == MonitorSpec(
        key="default/mon", type=MonitorType.HTTPS, interval=30.0, timeout=0.5, retries=2,
        thresholds=Thresholds(3, 4), jitter=0.25, port=8443,
        http=HttpCheck(method="POST", path="/ready", headers=(("Host", "a"),),
                       expected_codes=(CodeRange(200, 299), CodeRange(304, 304),
                                       CodeRange(400, 404)),
                       expected_body="ok", follow_redirects=True, insecure_skip_verify=True))
    assert MonitorSpec.from_wire(spec.to_wire()) == spec


@pytest.mark.parametrize(
    ("spec", "checks"),
    [
        ({"type": "tcp"}, {"tcp": TcpCheck()}),
        ({"type": "tcp", "tcp": {"send": "PING\r\n", "expect": "PONG"}},
         {"tcp": TcpCheck(send=b"PING\r\n", expect=b"PONG")}),
        ({"type": "tcp", "tcp": {"send": "é"}}, {"tcp": TcpCheck(send=b"\xc3\xa9")}),
        ({"type": "grpc"}, {"grpc": GrpcCheck()}),
        ({"type": "grpc", "grpc": {"service": "llm"}}, {"grpc": GrpcCheck(service="llm")}),
        ({"type": "inference"}, {"inference": InferenceCheck()}),
        ({"type": "inference", "timeout": "10s",
          "inference": {"model": "m", "prompt": "Say hi.", "maxTokens": 8,
                        "expectedText": "hi", "latencyThreshold": "1500ms", "path": "/chat"}},
         {"inference": InferenceCheck(model="m", prompt="Say hi.", max_tokens=8,
                                      expected_text="hi", latency_threshold=1.5,
                                      path="/chat")}),
    ],
)
def test_the_check_of_each_type(world: World, spec: dict[str, Any],
                                checks: dict[str, Any]) -> None:
    built = build_monitor(world, **spec)
    fields = {"http": built.http, "tcp": built.tcp, "grpc": built.grpc,
              "inference": built.inference}
    assert fields == {"http": None, "tcp": None, "grpc": None, "inference": None, **checks}
    assert MonitorSpec.from_wire(built.to_wire()) == built


def test_monitor_spec_takes_a_model_directly() -> None:
    model = Monitor.model_validate(monitor(type="grpc") | {"metadata": {"name": "g",
                                                                         "namespace": "ops"}})
    assert monitor_spec(model).key == "ops/g"


# -- build: pools ------------------------------------------------------------------------------

def pool_health(world: World, extra: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(build_pool_health(world.load(extra=extra)))


def test_every_pool_without_a_policy_gets_the_defaults(world: World) -> None:
    assert pool_health(world, [OTHER_POOL]) == {
        "default/pool": default_settings("default/pool"),
        "default/other": default_settings("default/other")}


def test_a_policy_with_only_targets_is_passive_health_with_envoy_defaults(
        world: World) -> None:
    settings = pool_health(world, [policy()])["default/pool"]
    assert settings == default_settings("default/pool")
    assert (settings.source, settings.members, settings.active) == ("", (), False)
    assert settings.regions == (GATEWAY_REGION,)
    assert settings.region_timeout == 30.0
    assert settings.passive == OutlierConfig()


def test_a_lone_monitor_is_a_group_of_one_voting_member(world: World) -> None:
    settings = pool_health(world, [monitor("http-health", interval="5s"),
                                   uses("http-health")])["default/pool"]
    (only,) = settings.members
    assert settings.source == "Monitor default/http-health"
    assert only.member == Member("default/http-health")
    assert only.monitor.key == "default/http-health"
    assert settings.quorum == 0.5
    assert settings.region_timeout == 15.0  # 3 x the interval


def test_a_group_keeps_its_members_flags_and_quorum(world: World) -> None:
    extra = [monitor("a", interval="5s"), monitor("b", interval="20s"),
             monitor("c", interval="1m"), monitor("d", type="inference", interval="2m"),
             group("grp", member("a"), member("b", monitoringOnly=True),
                   member("c", enabled=False), member("d", mustBeHealthy=True),
                   quorumPercent=75),
             uses("grp", "MonitorGroup")]
    settings = pool_health(world, extra)["default/pool"]
    assert settings.source == "MonitorGroup default/grp"
    assert [m.member for m in settings.members] == [
        Member("default/a"),
        Member("default/b", monitoring_only=True),
        Member("default/c", enabled=False),
        Member("default/d", must_be_healthy=True)]
    assert [m.monitor.interval for m in settings.members] == [5.0, 20.0, 60.0, 120.0]
    assert settings.quorum == 0.75
    assert settings.region_timeout == 360.0  # 3 x 2m, the longest enabled interval


def test_disabled_members_do_not_set_the_region_timeout(world: World) -> None:
    extra = [monitor("a", interval="5s"), monitor("b", interval="1h"),
             group("grp", member("a"), member("b", enabled=False)),
             uses("grp", "MonitorGroup")]
    assert pool_health(world, extra)["default/pool"].region_timeout == 15.0


def test_a_group_with_every_member_disabled_uses_the_default_region_timeout(
        world: World) -> None:
    extra = [monitor("a", interval="1m"), group("grp", member("a", enabled=False)),
             uses("grp", "MonitorGroup")]
    assert pool_health(world, extra)["default/pool"].region_timeout == 30.0


def test_every_policy_field_reaches_the_settings(world: World) -> None:
    extra = [monitor(), policy(monitorRef={"name": "mon"}, regions=["gateway", "eu-west"],
                               regionTimeout="45s", minHealthy=2, panicThresholdPercent=30,
                               slowStart="1m",
                               passive={"consecutiveErrors": 3, "baseEjectionTime": "10s",
                                        "maxEjectionTime": "100s", "maxEjectionPercent": 50})]
    settings = pool_health(world, extra)["default/pool"]
    assert settings.regions == ("gateway", "eu-west")
    assert settings.region_timeout == 45.0
    assert settings.min_healthy == 2
    assert settings.panic_threshold_percent == 30.0
    assert settings.slow_start == 60.0
    assert settings.passive == OutlierConfig(
        consecutive_errors=3, base_ejection=10.0, max_ejection=100.0, max_ejection_percent=50.0,
        panic_threshold_percent=30.0, slow_start=60.0)


def test_passive_health_can_be_turned_off(world: World) -> None:
    settings = pool_health(world, [policy(passive={"enabled": False})])["default/pool"]
    assert settings.passive is None


def test_slow_start_zero_disables_it(world: World) -> None:
    settings = pool_health(world, [policy(slowStart="0s")])["default/pool"]
    assert settings.slow_start == 0.0
    assert settings.passive is not None
    assert settings.passive.slow_start == 0.0


def test_one_policy_for_several_pools_and_pools_in_other_namespaces(world: World) -> None:
    team_pool = {**OTHER_POOL, "metadata": {"name": "pool", "namespace": "team"}}
    team_policy = policy(minHealthy=3)
    team_policy["metadata"]["namespace"] = "team"
    extra = [OTHER_POOL, team_pool, team_policy,
             policy(targetRefs=[POOL, {"kind": "InferencePool", "name": "other"}], minHealthy=2)]
    found = {key: s.min_healthy for key, s in pool_health(world, extra).items()}
    assert found == {"default/pool": 2, "default/other": 2, "team/pool": 3}
    assert {s.pool for s in pool_health(world, extra).values()} == set(found)


# -- the bundled example -----------------------------------------------------------------------

def test_the_bundled_health_example_loads_and_builds() -> None:
    from importlib import resources

    from inferlane.config.build import build_snapshot
    from inferlane.config.loader import load_config_text

    text = resources.files("inferlane").joinpath("examples/health.yaml").read_text()
    bundle = load_config_text(text, "health.yaml")
    assert bundle.warnings == ()
    assert len(bundle.model_servers) == 3
    build_snapshot(bundle)
    (settings,) = build_pool_health(bundle).values()
    assert settings.source == "MonitorGroup default/llama-checks"
    assert [(m.monitor.type, m.member.must_be_healthy) for m in settings.members] == [
        (MonitorType.HTTP, False), (MonitorType.INFERENCE, True)]
    assert settings.regions == (GATEWAY_REGION,)
    assert settings.passive is not None
    assert settings.passive.consecutive_errors == 3

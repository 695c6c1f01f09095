"""The traffic-policy kinds: InferenceObjective, InferenceModel, the pool's objective and
flow-control annotations, RateLimitPolicy — validation errors, and what a valid config builds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from inferlane.config.build import build_snapshot
from inferlane.errors import ConfigError
from inferlane.flowcontrol import BandConfig, FlowControlConfig, SaturationConfig
from inferlane.ratelimit import Limit
from inferlane.routing.objectives import STANDARD, Objective
from inferlane.routing.rate_limits import RedisBackendSpec

if TYPE_CHECKING:
    from conftest import World

OBJECTIVE_VERSION = "inference.networking.x-k8s.io/v1alpha2"
TTFT = "inferlane.dev/ttft-target"
DEADLINE = "inferlane.dev/deadline"
DEFAULT_OBJECTIVE = "inferlane.dev/default-objective"
FLOW_CONTROL = "inferlane.dev/flow-control"
RPM_RULE = {"name": "per-key", "requestsPerMinute": 5}
SECRET = "s3cr3t-hunter2"
OTHER_POOL = {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
              "metadata": {"name": "other"},
              "spec": {"selector": {"matchLabels": {"app": "llm"}},
                       "targetPorts": [{"number": 8000}]}}


def objective(name: str = "obj", pool: str = "pool", *, priority: int | None = None,
              annotations: dict[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": OBJECTIVE_VERSION, "kind": "InferenceObjective",
                           "metadata": {"name": name}, "spec": {"poolRef": {"name": pool}}}
    if priority is not None:
        doc["spec"]["priority"] = priority
    if annotations:
        doc["metadata"]["annotations"] = annotations
    return doc


def inference_model(name: str = "im", model: str = "m", pool: str = "pool", *,
                    criticality: str | None = None,
                    targets: list[dict[str, Any]] | None = None,
                    annotations: dict[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": OBJECTIVE_VERSION, "kind": "InferenceModel",
                           "metadata": {"name": name},
                           "spec": {"modelName": model, "poolRef": {"name": pool}}}
    if criticality is not None:
        doc["spec"]["criticality"] = criticality
    if targets is not None:
        doc["spec"]["targetModels"] = targets
    if annotations:
        doc["metadata"]["annotations"] = annotations
    return doc


def rate_limit_policy(rate_limit: dict[str, Any], targets: list[dict[str, Any]] | None = None,
                      name: str = "limits") -> dict[str, Any]:
    return {"apiVersion": "inferlane.dev/v1alpha1", "kind": "RateLimitPolicy",
            "metadata": {"name": name},
            "spec": {"targetRefs": targets or [{"kind": "Gateway", "name": "gw"}],
                     "rateLimit": rate_limit}}


def pool_annotations(annotations: dict[str, str]) -> list[tuple[str, tuple[Any, ...], Any]]:
    return [("pool", ("metadata", "annotations"), annotations)]


def issues_of(world: World, patches: list[tuple[str, tuple[Any, ...], Any]],
              extra: list[dict[str, Any]], kind: str, name: str) -> list[tuple[str, str]]:
    """(path, message) of the issues raised against resource ``kind``/``name``."""
    return [(i.path, i.message) for i in world.issues(patches, extra)
            if (i.kind, i.name) == (kind, name)]


@pytest.mark.parametrize(
    ("patches", "extra", "owner", "where", "fragment"),
    [
        # InferenceObjective
        ([], [objective(pool="pol")], ("InferenceObjective", "obj"), "spec.poolRef.name",
         'InferencePool "default/pol" not found (did you mean "pool"?)'),
        ([], [objective(annotations={TTFT: "fast"})], ("InferenceObjective", "obj"),
         f'metadata.annotations["{TTFT}"]', '"fast" is not a Gateway API duration'),
        ([], [objective(annotations={DEADLINE: "0s"})], ("InferenceObjective", "obj"),
         f'metadata.annotations["{DEADLINE}"]', "must be longer than 0s"),
        ([], [objective(annotations={DEADLINE: "-1s"})], ("InferenceObjective", "obj"),
         f'metadata.annotations["{DEADLINE}"]', '"-1s" is not a Gateway API duration'),
        ([], [objective(annotations={TTFT: "0ms"})], ("InferenceObjective", "obj"),
         f'metadata.annotations["{TTFT}"]', "must be longer than 0s"),
        # InferenceModel
        ([], [inference_model(annotations={TTFT: "1 s"})], ("InferenceModel", "im"),
         f'metadata.annotations["{TTFT}"]', "not a Gateway API duration"),
        ([], [inference_model(), inference_model(name="im-2")], ("InferenceModel", "im-2"),
         "spec.modelName", 'model "m" of pool pool already has InferenceModel im: keep one'),
        ([], [inference_model(criticality="Urgent")], ("InferenceModel", "im"),
         "spec.criticality", 'must be one of "Critical", "Standard", "Sheddable" (got "Urgent")'),
        ([], [inference_model(targets=[{"name": "a", "weight": 0}, {"name": "b", "weight": 0}])],
         ("InferenceModel", "im"), "spec.targetModels",
         "at least one target needs a weight greater than 0"),
        ([], [inference_model(pool="pools")], ("InferenceModel", "im"), "spec.poolRef.name",
         'InferencePool "default/pools" not found (did you mean "pool"?)'),
        # the pool's annotations
        (pool_annotations({DEFAULT_OBJECTIVE: "ob"}), [objective()], ("InferencePool", "pool"),
         f'metadata.annotations["{DEFAULT_OBJECTIVE}"]',
         'InferenceObjective "default/ob" not found (did you mean "obj"?)'),
        (pool_annotations({DEFAULT_OBJECTIVE: "theirs"}),
         [objective("theirs", pool="other"), OTHER_POOL],
         ("InferencePool", "pool"), f'metadata.annotations["{DEFAULT_OBJECTIVE}"]',
         'InferenceObjective "theirs" belongs to pool other, not to this pool'),
        (pool_annotations({FLOW_CONTROL: "off"}), [], ("InferencePool", "pool"),
         f'metadata.annotations["{FLOW_CONTROL}"]',
         '"off" is not a flow-control mode: use "enabled" or "disabled"'),
        # RateLimitPolicy
        ([], [rate_limit_policy({"backend": "redis", "rules": [RPM_RULE]})],
         ("RateLimitPolicy", "limits"), "spec.rateLimit.redis", "backend redis needs redis.url"),
        ([], [rate_limit_policy({"backend": "memory", "redis": {"url": "redis://h:6379/0"},
                                 "rules": [RPM_RULE]})],
         ("RateLimitPolicy", "limits"), "spec.rateLimit.redis", "only used with backend: redis"),
        ([], [rate_limit_policy({"backend": "redis", "redis": {"url": "http://h:6379/0"},
                                 "rules": [RPM_RULE]})],
         ("RateLimitPolicy", "limits"), "spec.rateLimit.redis.url",
         "use a redis://, rediss:// or unix:// URL"),
        ([], [rate_limit_policy({"rules": [{"name": "empty"}]})], ("RateLimitPolicy", "limits"),
         "spec.rateLimit.rules[0]", "set requestsPerMinute, tokensPerMinute or both"),
        ([], [rate_limit_policy({"rules": [RPM_RULE, {"name": "per-key",
                                                      "tokensPerMinute": 10}]})],
         ("RateLimitPolicy", "limits"), "spec.rateLimit.rules[1].name",
         'rule name "per-key" is used twice'),
        ([], [rate_limit_policy({"rules": [RPM_RULE]}, [{"kind": "Gateway", "name": "gw2"}])],
         ("RateLimitPolicy", "limits"), "spec.targetRefs[0].name",
         'Gateway "default/gw2" not found (did you mean "gw"?)'),
        ([], [rate_limit_policy({"rules": [RPM_RULE]}, [{"kind": "Gateway", "name": "gw"},
                                                        {"kind": "HTTPRoute", "name": "rout"}])],
         ("RateLimitPolicy", "limits"), "spec.targetRefs[1].name",
         'HTTPRoute "default/rout" not found (did you mean "route"?)'),
        ([], [rate_limit_policy({"rules": [RPM_RULE]}, [{"kind": "Service", "name": "gw"}])],
         ("RateLimitPolicy", "limits"), "spec.targetRefs[0].kind",
         'must be one of "Gateway", "HTTPRoute" (got "Service")'),
    ],
)
def test_policy_errors(world: World, patches: list[tuple[str, tuple[Any, ...], Any]],
                       extra: list[dict[str, Any]], owner: tuple[str, str], where: str,
                       fragment: str) -> None:
    world.expect(issues_of(world, patches, extra, *owner), where, fragment)


@pytest.mark.parametrize("url", [f"redis://:{SECRET}@127.0.0.1:6379/0",
                                 f"rediss://user:{SECRET}@redis.example.com:6380/1"])
def test_a_password_in_the_redis_url_is_refused_without_echoing_it(world: World,
                                                                   url: str) -> None:
    policy = rate_limit_policy({"backend": "redis", "redis": {"url": url},
                                "rules": [RPM_RULE]})
    with pytest.raises(ConfigError) as caught:
        world.load(extra=[policy])
    found = [(i.path, i.message) for i in caught.value.issues]
    world.expect(found, "spec.rateLimit.redis.url", "name an environment variable in "
                                                    "passwordFromEnv instead")
    assert SECRET not in str(caught.value)
    assert all(SECRET not in repr(issue) for issue in caught.value.issues)


# -- a valid config with every new kind, built -------------------------------------------------

PICKER: dict[str, Any] = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
    "kind": "EndpointPickerConfig",
    "metadata": {"name": "picker"},
    "plugins": [{"type": "queue-scorer"}, {"type": "max-score-picker"}],
    "schedulingProfiles": [{"name": "only", "plugins": [{"pluginRef": "queue-scorer"},
                                                        {"pluginRef": "max-score-picker"}]}],
    "saturationDetector": {"queueDepthThreshold": 3, "kvCacheUtilThreshold": 0.9,
                           "metricsStalenessThreshold": "500ms"},
    "flowControl": {
        "maxRequests": 100,
        "maxBytes": "64Mi",
        "defaultRequestTTL": "1500ms",
        "defaultBand": {"maxRequests": 20, "maxBytes": "1Mi", "fairnessPolicy": "fcfs"},
        "priorityBands": [{"priority": 2, "maxRequests": 7, "maxBytes": 2048,
                           "fairnessPolicy": "round-robin", "orderingPolicy": "edf"}],
    },
}
RR_SERVER = {"apiVersion": "inferlane.dev/v1alpha1", "kind": "ModelServer",
             "metadata": {"name": "server-rr", "labels": {"app": "rr"}},
             "spec": {"address": "127.0.0.1:18001", "models": ["m-rr"]}}
RR_POOL = {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
           "metadata": {"name": "pool-rr",
                        "annotations": {"inferlane.dev/load-balancing": "round-robin"}},
           "spec": {"selector": {"matchLabels": {"app": "rr"}},
                    "targetPorts": [{"number": 8000}]}}
RR_ROUTE = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "route-rr"},
            "spec": {"parentRefs": [{"name": "gw"}],
                     "rules": [{"matches": [{"headers": [{"name": "X-Gateway-Model-Name",
                                                          "value": "m-rr"}]}],
                                "backendRefs": [{"group": "inference.networking.k8s.io",
                                                 "kind": "InferencePool",
                                                 "name": "pool-rr"}]}]}}
FULL_EXTRA: list[dict[str, Any]] = [
    PICKER, RR_SERVER, RR_POOL, RR_ROUTE,
    objective("critical", priority=2, annotations={TTFT: "500ms", DEADLINE: "2s"}),
    objective("batch", priority=-1),
    objective("standard", annotations={TTFT: "1s"}),
    inference_model("im-legacy", model="m-legacy", criticality="Sheddable",
                    targets=[{"name": "m", "weight": 1}, {"name": "m-lora", "weight": 0}]),
    inference_model("im-main", model="m", criticality="Critical"),
    rate_limit_policy({"clientKey": {"header": "X-API-Key"},
                       "rules": [{"name": "per-key", "requestsPerMinute": 60},
                                 {"name": "m-tokens", "model": "m", "tokensPerMinute": 1000}]}),
    rate_limit_policy({"backend": "redis", "failureMode": "FailClose",
                       "redis": {"url": "redis://127.0.0.1:6379/2", "passwordFromEnv": "RL_PW",
                                 "keyPrefix": "t:", "timeoutMs": 100},
                       "rules": [{"name": "shared", "requestsPerMinute": 10,
                                  "tokensPerMinute": 500}]},
                      [{"kind": "HTTPRoute", "name": "route"}], name="shared"),
]
FULL_POOL_ANNOTATIONS = pool_annotations({"inferlane.dev/endpoint-picker-config": "picker",
                                          DEFAULT_OBJECTIVE: "standard"})


def test_a_config_with_every_policy_kind_builds_the_runtime_values(world: World) -> None:
    bundle = world.load(FULL_POOL_ANNOTATIONS, FULL_EXTRA)
    assert [(w.path, w.message) for w in bundle.warnings] == []
    snapshot = build_snapshot(bundle)
    pool = snapshot.pools["default/pool"]

    critical = Objective("critical", priority=2, ttft_target=0.5, deadline=2.0)
    resolve = pool.objectives.resolve
    assert resolve("critical", "anything") == critical
    assert resolve("batch", "m") == Objective("batch", priority=-1)  # the header wins
    assert resolve(None, "m") == Objective("im-main", priority=2)  # by model: Critical
    assert resolve(None, "m-legacy") == Objective("im-legacy", priority=-1)  # Sheddable
    # Without a known objective or model: the pool's default objective.
    assert resolve(None, "m-other") == Objective("standard", priority=0, ttft_target=1.0)
    assert resolve("no-such-objective", "m-other") == resolve(None, "m-other")
    # targetModels rename like a rewrite; the weight-0 target is never chosen.
    assert {pool.rewrites.rewrite("m-legacy", r / 10) for r in range(10)} == {"m"}

    assert pool.flow is not None
    default_band = BandConfig(priority=0, max_requests=20, max_bytes=2**20, fairness="fcfs",
                              ordering="fcfs")
    assert pool.flow.queue == FlowControlConfig(
        bands=(BandConfig(priority=2, max_requests=7, max_bytes=2048, fairness="round-robin",
                          ordering="edf"),),
        default_band=default_band, max_requests=100, max_bytes=64 * 2**20, queue_ttl=1.5)
    assert pool.flow.queue.band_for(-1) == BandConfig(
        priority=-1, max_requests=20, max_bytes=2**20, fairness="fcfs", ordering="fcfs")
    assert pool.flow.saturation == SaturationConfig(queue_threshold=3.0, kv_threshold=0.9,
                                                    staleness_seconds=0.5)

    round_robin = snapshot.pools["default/pool-rr"]
    assert round_robin.flow is None
    assert round_robin.objectives.resolve("critical", "m-rr") == STANDARD  # another pool's

    memory, shared = snapshot.rate_limits
    assert (memory.key, memory.gateways, memory.routes) == (
        "default/limits", frozenset({"default/gw"}), frozenset())
    assert memory.client_key_header == "x-api-key"
    assert memory.redis is None
    assert memory.fail_open
    assert [(r.name, r.model, r.limit) for r in memory.rules] == [
        ("per-key", None, Limit(requests_per_minute=60)),
        ("m-tokens", "m", Limit(tokens_per_minute=1000))]
    assert memory.applies("default/gw", "default/route-rr")
    assert [r.applies_to("m-rr") for r in memory.rules] == [True, False]

    assert (shared.key, shared.gateways, shared.routes) == (
        "default/shared", frozenset(), frozenset({"default/route"}))
    assert shared.client_key_header is None
    assert shared.redis == RedisBackendSpec(url="redis://127.0.0.1:6379/2", password_env="RL_PW",
                                            key_prefix="t:", timeout=0.1)
    assert not shared.fail_open
    assert [(r.name, r.limit) for r in shared.rules] == [
        ("shared", Limit(requests_per_minute=10, tokens_per_minute=500))]
    assert shared.applies("default/other-gw", "default/route")
    assert not shared.applies("default/gw", "default/route-rr")


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, "defaults"),  # the default profile reads metrics: queues on
        ({FLOW_CONTROL: "enabled"}, "defaults"),
        ({FLOW_CONTROL: "disabled"}, None),
        ({"inferlane.dev/load-balancing": "least-request"}, "defaults"),
        ({"inferlane.dev/load-balancing": "round-robin"}, None),
        ({"inferlane.dev/load-balancing": "random"}, None),
    ],
)
def test_which_pools_get_flow_control(world: World, annotations: dict[str, str],
                                      expected: str | None) -> None:
    pool = build_snapshot(world.load(pool_annotations(annotations))).pools["default/pool"]
    if expected is None:
        assert pool.flow is None
    else:
        assert pool.flow is not None
        assert (pool.flow.queue, pool.flow.saturation) == (FlowControlConfig(),
                                                           SaturationConfig())


def test_a_picker_config_can_turn_flow_control_off(world: World) -> None:
    picker = {**PICKER, "flowControl": {"enabled": False}}
    bundle = world.load(pool_annotations({"inferlane.dev/endpoint-picker-config": "picker"}),
                        [picker])
    assert build_snapshot(bundle).pools["default/pool"].flow is None


def test_stale_after_is_the_saturation_staleness_unless_the_picker_config_sets_one(
        world: World) -> None:
    plain = build_snapshot(world.load(), stale_after=7.0).pools["default/pool"]
    assert plain.flow is not None
    assert plain.flow.saturation.staleness_seconds == 7.0
    configured = build_snapshot(world.load(FULL_POOL_ANNOTATIONS, FULL_EXTRA),
                                stale_after=7.0).pools["default/pool"]
    assert configured.flow is not None
    assert configured.flow.saturation.staleness_seconds == 0.5

"""InferencePool, InferenceModelRewrite and ModelServer validation, plus parsed properties."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from inferlane.config.resources import (
    LOAD_BALANCING_ANNOTATION,
    InferencePool,
    ModelServer,
    parse_address,
)

if TYPE_CHECKING:
    from conftest import World

DELETE = "<delete>"
LB = ("metadata", "annotations", LOAD_BALANCING_ANNOTATION)


@pytest.mark.parametrize(
    ("path", "value", "where", "fragment"),
    [
        (("spec", "selector"), DELETE, "spec.selector", "required field"),
        (("spec", "selector", "matchLabels"), {}, "spec.selector.matchLabels",
         "must not be empty"),
        (("spec", "selector", "matchLabels"), DELETE, "spec.selector.matchLabels",
         "required field"),
        (("spec", "selector", "matchLabels"), {"app": 1}, "spec.selector.matchLabels.app",
         'quote it: "1"'),
        (("spec", "selector", "matchLabels"), {"app": "a b"}, "spec.selector.matchLabels.app",
         "not a valid label value"),
        (("spec", "selector", "matchExpressions"), [], "spec.selector.matchExpressions",
         "unknown field"),
        (("spec", "targetPorts"), [], "spec.targetPorts", "must not be empty"),
        (("spec", "targetPorts"), DELETE, "spec.targetPorts", "required field"),
        (("spec", "targetPorts"), [{"number": 8000 + i} for i in range(9)], "spec.targetPorts",
         "at most 8"),
        (("spec", "targetPorts"), [{"number": 8000}, {"number": 8000}],
         "spec.targetPorts[1].number", "duplicate port 8000"),
        (("spec", "targetPorts", 0, "number"), 0, "spec.targetPorts[0].number",
         "between 1 and 65535"),
        (("spec", "targetPorts", 0), 8000, "spec.targetPorts[0]", "must be a mapping"),
        (("spec", "appProtocol"), "grpc", "spec.appProtocol", "must be one of"),
        (("spec", "endpointPickerRef"), {"name": "epp", "failureMode": "Open"},
         "spec.endpointPickerRef.failureMode", "must be one of"),
        (("spec", "endpointPickerRef"), {"port": {"number": 9002}},
         "spec.endpointPickerRef.name", "required field"),
        (LB, "least-loaded", 'metadata.annotations["inferlane.dev/load-balancing"]',
         "not a load-balancing mode"),
        (("apiVersion",), "inference.networking.x-k8s.io/v1alpha2", "apiVersion",
         "use inference.networking.k8s.io/v1"),
    ],
)
def test_pool_errors(world: World, path: tuple[Any, ...], value: Any, where: str,
                     fragment: str) -> None:
    world.expect(world.errors([("pool", path, value)]), where, fragment)


@pytest.mark.parametrize(("annotation", "expected"),
                         [(DELETE, "default"), ("round-robin", "round-robin"),
                          ("random", "random")])
def test_pool_load_balancing(world: World, annotation: str, expected: str) -> None:
    pool = world.load([("pool", LB, annotation)]).inference_pools[0]
    assert pool.load_balancing == expected


def test_pool_upstream_fields_load_with_warnings(world: World) -> None:
    patches = [("pool", ("spec", "endpointPickerRef"),
                {"group": "", "kind": "Service", "name": "epp", "port": {"number": 9002},
                 "failureMode": "FailOpen"}),
               ("pool", ("spec", "appProtocol"), "kubernetes.io/h2c"),
               ("pool", ("spec", "targetPorts"), [{"number": 8000}, {"number": 8001}])]
    warnings = world.warnings(patches)
    world.expect(warnings, "spec.endpointPickerRef", "inferlane picks endpoints itself")
    world.expect(warnings, "spec.appProtocol", "not implemented yet")
    spec = world.load(patches).inference_pools[0].spec
    assert [p.number for p in spec.target_ports] == [8000, 8001]
    assert spec.endpoint_picker_ref is not None
    assert spec.endpoint_picker_ref.failure_mode == "FailOpen"


@pytest.mark.parametrize(
    ("path", "value", "where", "fragment"),
    [
        (("spec", "poolRef"), DELETE, "spec.poolRef", "required field"),
        (("spec", "poolRef", "name"), DELETE, "spec.poolRef.name", "required field"),
        (("spec", "poolRef", "namespace"), "default", "spec.poolRef.namespace", "unknown field"),
        (("spec", "rules"), [], "spec.rules", "must not be empty"),
        (("spec", "rules", 0, "targets"), [], "spec.rules[0].targets", "must not be empty"),
        (("spec", "rules", 0, "targets"), [{"modelRewrite": "a", "weight": 0}],
         "spec.rules[0].targets", "at least one target needs a weight greater than 0"),
        (("spec", "rules", 0, "targets", 0, "weight"), -1, "spec.rules[0].targets[0].weight",
         "at least 0"),
        (("spec", "rules", 0, "targets", 0, "modelRewrite"), "",
         "spec.rules[0].targets[0].modelRewrite", "must not be empty"),
        (("spec", "rules", 0, "targets", 0, "model"), "x", "spec.rules[0].targets[0].model",
         'did you mean "modelRewrite"'),
        (("spec", "rules", 0, "matches", 0, "model", "type"), "Prefix",
         "spec.rules[0].matches[0].model.type", "must be one of"),
        (("spec", "rules", 0, "matches", 0, "model", "value"), "",
         "spec.rules[0].matches[0].model.value", "must not be empty"),
        (("spec", "rules", 0, "matches", 0), {}, "spec.rules[0].matches[0].model",
         "required field"),
    ],
)
def test_rewrite_errors(world: World, path: tuple[Any, ...], value: Any, where: str,
                        fragment: str) -> None:
    world.expect(world.errors([("rewrite", path, value)]), where, fragment)


def test_rewrite_defaults(world: World) -> None:
    rewrite = world.load().model_rewrites[0]
    assert rewrite.spec.pool_ref.group == "inference.networking.k8s.io"
    assert rewrite.spec.pool_ref.kind == "InferencePool"
    rule = rewrite.spec.rules[0]
    assert rule.matches[0].model.type == "Exact"
    assert [(t.model_rewrite, t.weight) for t in rule.targets] == [("m", 9), ("m-lora", 1)]


@pytest.mark.parametrize(
    ("path", "value", "where", "fragment"),
    [
        (("spec", "address"), DELETE, "spec.address", "required field"),
        (("spec", "engine"), "vLLM", "spec.engine", 'did you mean "vllm"'),
        (("spec", "models"), ["a", "a"], "spec.models[1]", 'model "a" is listed twice'),
        (("spec", "models"), [" "], "spec.models[0]", "must not be empty"),
        (("spec", "models"), "a", "spec.models", "must be a list"),
        (("spec", "metricsPath"), "metrics", "spec.metricsPath", 'must start with "/"'),
        (("spec", "port"), 80, "spec.port", "unknown field"),
        (("apiVersion",), "inferlane.dev/v1", "apiVersion", "use inferlane.dev/v1alpha1"),
    ],
)
def test_model_server_errors(world: World, path: tuple[Any, ...], value: Any, where: str,
                             fragment: str) -> None:
    world.expect(world.errors([("server", path, value)]), where, fragment)


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("", "host is missing"),
        (":80", "host is missing"),
        ("http://10.0.0.1:80", "without a scheme"),
        ("::1", "put IPv6 addresses in brackets"),
        ("fe80::1:8000", "put IPv6 addresses in brackets"),
        ("[zz]:80", "not an IPv6 address"),
        ("[::1]:", "port must be a number"),
        ("[::1]:99999", "port must be a number"),
        ("host:0", "port must be a number"),
        ("host:abc", "port must be a number"),
        ("host:", "port must be a number"),
        ("300.1.1.1:80", "not an IPv4 address"),
        ("bad_host:80", "not a valid host name"),
        ("-bad:80", "not a valid host name"),
        ("a..b", "not a valid host name"),
    ],
)
def test_address_errors(world: World, address: str, fragment: str) -> None:
    world.expect(world.errors([("server", ("spec", "address"), address)]), "spec.address",
                 fragment)


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("127.0.0.1:18000", "127.0.0.1", 18000),
        ("10.0.0.5", "10.0.0.5", None),
        ("vllm-0.internal:8000", "vllm-0.internal", 8000),
        ("Model-Server.LOCAL", "model-server.local", None),
        ("localhost.:80", "localhost.", 80),
        ("[::1]:8000", "::1", 8000),
        ("[fe80::1]", "fe80::1", None),
    ],
)
def test_address_parsing(world: World, address: str, host: str, port: int | None) -> None:
    assert parse_address(address) == (host, port)
    server = world.load([("server", ("spec", "address"), address)]).model_servers[0]
    assert (server.host, server.port) == (host, port)
    assert (server.spec.host, server.spec.port) == (host, port)


def test_model_server_defaults(world: World) -> None:
    server = world.load([("server", ("spec", "models"), DELETE)]).model_servers[0]
    assert server.spec.engine == "vllm"
    assert server.spec.models == []
    assert server.spec.metrics_path == "/metrics"


def test_models_construct_by_python_name() -> None:
    # The runtime side builds models in Python with snake_case names (populate_by_name).
    server = ModelServer(api_version="inferlane.dev/v1alpha1", kind="ModelServer",
                         metadata={"name": "s"}, spec={"address": "h:1", "metrics_path": "/m"})
    assert server.spec.metrics_path == "/m"
    pool = InferencePool.model_validate({
        "apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
        "metadata": {"name": "p"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": 1}]}})
    assert pool.spec.selector.matches({"a": "b", "c": "d"})
    assert not pool.spec.selector.matches({"a": "c"})

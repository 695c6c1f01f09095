"""EndpointPickerConfig loading: validation errors and warnings, and the pool annotations."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from inferlane.config.loader import ConfigBundle, load_config_text
from inferlane.errors import ConfigError

PICKER_ANNOTATION = "inferlane.dev/endpoint-picker-config"
LB_ANNOTATION = "inferlane.dev/load-balancing"

BASE: list[dict[str, Any]] = [
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
     "spec": {"gatewayClassName": "inferlane",
              "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}},
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
     "metadata": {"name": "route"},
     "spec": {"parentRefs": [{"name": "gw"}],
              "rules": [{"backendRefs": [{"group": "inference.networking.k8s.io",
                                          "kind": "InferencePool", "name": "pool"}]}]}},
    {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
     "metadata": {"name": "pool", "annotations": {PICKER_ANNOTATION: "smart"}},
     "spec": {"selector": {"matchLabels": {"app": "llm"}}, "targetPorts": [{"number": 8000}]}},
    {"apiVersion": "inferlane.dev/v1alpha1", "kind": "ModelServer",
     "metadata": {"name": "server", "labels": {"app": "llm"}},
     "spec": {"address": "127.0.0.1:18000", "models": ["m"]}},
    {"apiVersion": "inference.networking.x-k8s.io/v1alpha1", "kind": "EndpointPickerConfig",
     "metadata": {"name": "smart"},
     "plugins": [{"type": "saturation-filter"},
                 {"type": "queue-scorer"},
                 {"type": "prefix-cache-scorer", "parameters": {"blockSizeTokens": 16}},
                 {"type": "max-score-picker"}],
     "schedulingProfiles": [{"name": "default",
                             "plugins": [{"pluginRef": "saturation-filter"},
                                         {"pluginRef": "queue-scorer", "weight": 2},
                                         {"pluginRef": "prefix-cache-scorer", "weight": 3},
                                         {"pluginRef": "max-score-picker"}]}]},
]
POOL, PICKER = 2, 4


def text(changes: dict[tuple[int, tuple[Any, ...]], Any] | None = None,
         extra: list[dict[str, Any]] | None = None) -> str:
    docs = copy.deepcopy(BASE)
    for (doc, path), value in (changes or {}).items():
        target: Any = docs[doc]
        for part in path[:-1]:
            target = target[part]
        if value is None:
            del target[path[-1]]
        elif isinstance(target, list) and path[-1] == len(target):
            target.append(value)
        else:
            target[path[-1]] = value
    return yaml.safe_dump_all([*docs, *(extra or [])], sort_keys=False)


def load(changes: dict[tuple[int, tuple[Any, ...]], Any] | None = None,
         extra: list[dict[str, Any]] | None = None) -> ConfigBundle:
    return load_config_text(text(changes, extra), "test.yaml")


def errors(changes: dict[tuple[int, tuple[Any, ...]], Any] | None = None,
           extra: list[dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load(changes, extra)
    return [(issue.path, issue.message) for issue in info.value.issues]


def expect(found: list[tuple[str, str]], path: str, fragment: str) -> None:
    assert any(p == path and fragment in m for p, m in found), "\n".join(
        f"{p}: {m}" for p, m in found)


def test_a_valid_config_loads_and_the_pool_finds_it() -> None:
    bundle = load()
    assert [c.name for c in bundle.picker_configs] == ["smart"]
    pool = bundle.inference_pools[0]
    assert pool.endpoint_picker_config == "smart"
    found = bundle.picker_config_for(pool)
    assert found is not None
    assert found.scheduling_profiles[0].plugins[1].weight == 2
    assert bundle.warnings == ()


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({(PICKER, ("plugins", 1, "type")): "queue-scorr"}, "plugins[1].type",
         'unknown plugin type "queue-scorr" (did you mean "queue-scorer"?); known types: '),
        ({(PICKER, ("plugins", 2, "parameters")): {"blockSizeTokenz": 16}},
         "plugins[2].parameters", "unknown parameter 'blockSizeTokenz'"),
        ({(PICKER, ("plugins", 0, "parameters")): {"kvThreshold": 2}},
         "plugins[0].parameters", 'parameter "kvThreshold" must be a number between 0 and 1'),
        ({(PICKER, ("schedulingProfiles", 0, "plugins", 1, "pluginRef")): "queue"},
         "schedulingProfiles[0].plugins[1].pluginRef",
         'plugin "queue" is not defined in plugins (did you mean "queue-scorer"?)'),
        ({(PICKER, ("schedulingProfiles", 0, "plugins", 1, "pluginRef")): "zzz"},
         "schedulingProfiles[0].plugins[1].pluginRef",
         'plugin "zzz" is not defined in plugins (defined: "saturation-filter", '
         '"queue-scorer", "prefix-cache-scorer", "max-score-picker")'),
        ({(PICKER, ("schedulingProfiles", 1)): {"name": "default",
                                                "plugins": [{"pluginRef": "queue-scorer"}]}},
         "schedulingProfiles[1].name", 'duplicate profile name "default"'),
        ({(PICKER, ("plugins", 3)): {"type": "queue-scorer"}}, "plugins[3].type",
         'duplicate plugin name "queue-scorer" (also plugins[1])'),
        ({(PICKER, ("plugins", 3)): {"type": "max-score-picker", "name": "queue-scorer"}},
         "plugins[3].name", 'duplicate plugin name "queue-scorer"'),
        ({(PICKER, ("schedulingProfiles", 0, "plugins", 0, "pluginRef")): "queue-scorer"},
         "schedulingProfiles[0].plugins[1].pluginRef", "listed twice in this profile"),
        ({(PICKER, ("plugins",)): []}, "plugins", "must not be empty"),
        ({(PICKER, ("schedulingProfiles",)): None}, "schedulingProfiles",
         "required field is missing"),
        ({(PICKER, ("saturationDetector",)): {"kvCacheUtilThreshold": 1.5}},
         "saturationDetector.kvCacheUtilThreshold", "1"),
        ({(PICKER, ("saturationDetector",)): {"metricsStalenessThreshold": "2 s"}},
         "saturationDetector.metricsStalenessThreshold", "not a Gateway API duration"),
        ({(PICKER, ("flowControl",)): {"priorityBands": [{"priority": 1}, {"priority": 1}]}},
         "flowControl.priorityBands[1].priority", "priority 1 has two bands: keep one"),
        ({(PICKER, ("flowControl",)): {"maxBytes": "64MB"}}, "flowControl.maxBytes",
         '"64MB" is not a byte quantity'),
        ({(PICKER, ("flowControl",)): {"maxBytes": 0}}, "flowControl.maxBytes",
         "must be at least 1 byte"),
        ({(PICKER, ("flowControl",)): {"defaultBand": {"orderingPolicy": "lifo"}}},
         "flowControl.defaultBand.orderingPolicy", "fcfs"),
        ({(PICKER, ("flowControl",)): {"defaultRequestTTL": "30"}},
         "flowControl.defaultRequestTTL", "not a Gateway API duration"),
        ({(PICKER, ("schedulingProfiles", 0, "plugins", 1, "weight")): -1},
         "schedulingProfiles[0].plugins[1].weight", "0"),
        ({(PICKER, ("plugins", 1, "parametrs")): {}}, "plugins[1].parametrs", "unknown field"),
        ({(POOL, ("metadata", "annotations", PICKER_ANNOTATION)): "smrt"},
         f'metadata.annotations["{PICKER_ANNOTATION}"]',
         'EndpointPickerConfig "default/smrt" not found (did you mean "smart"?)'),
        ({(POOL, ("metadata", "annotations", PICKER_ANNOTATION)): ""},
         f'metadata.annotations["{PICKER_ANNOTATION}"]', "must name an EndpointPickerConfig"),
        ({(PICKER, ("metadata", "namespace")): "other"},
         f'metadata.annotations["{PICKER_ANNOTATION}"]',
         "there is one in namespace other: set the reference's namespace"),
    ],
)
def test_picker_config_errors(changes: dict[tuple[int, tuple[Any, ...]], Any], path: str,
                              fragment: str) -> None:
    expect(errors(changes), path, fragment)


def test_a_misspelled_type_and_the_references_it_breaks_are_reported_together() -> None:
    found = errors({(PICKER, ("plugins", 1, "type")): "queue-scorr"})
    expect(found, "plugins[1].type", 'unknown plugin type "queue-scorr"')
    expect(found, "schedulingProfiles[0].plugins[1].pluginRef",
           'plugin "queue-scorer" is not defined in plugins (did you mean "queue-scorr"?)')


def test_two_pickers_in_one_profile_is_an_error() -> None:
    changes = {(PICKER, ("plugins", 1)): {"type": "random-picker"},
               (PICKER, ("schedulingProfiles", 0, "plugins", 1)): {"pluginRef": "random-picker"}}
    expect(errors(changes), "schedulingProfiles[0].plugins",
           "profile 'default' has 2 pickers (random-picker, max-score-picker): keep one")


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({(PICKER, ("schedulingProfiles", 0, "plugins", 0, "weight")): 2},
         "schedulingProfiles[0].plugins[0].weight",
         'ignored: "saturation-filter" is not a scorer'),
        ({(PICKER, ("schedulingProfiles", 1)): {"name": "other",
                                                "plugins": [{"pluginRef": "queue-scorer"}]}},
         "schedulingProfiles[1]", 'only the first profile ("default") is run'),
        ({(POOL, ("metadata", "annotations", PICKER_ANNOTATION)): None},
         "metadata.name", "no InferencePool names this config"),
        ({(POOL, ("metadata", "annotations", LB_ANNOTATION)): "default"},
         f'metadata.annotations["{LB_ANNOTATION}"]',
         f"ignored: {PICKER_ANNOTATION} takes precedence"),
    ],
)
def test_picker_config_warnings(changes: dict[tuple[int, tuple[Any, ...]], Any], path: str,
                                fragment: str) -> None:
    expect([(w.path, w.message) for w in load(changes).warnings], path, fragment)


def test_an_upstream_file_without_metadata_is_named_default() -> None:
    upstream = {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
        "kind": "EndpointPickerConfig",
        "plugins": [{"type": "queue-scorer"}, {"type": "kv-cache-scorer"},
                    {"type": "prefix-cache-scorer",
                     "parameters": {"blockSize": 64, "maxPrefixBlocksToMatch": 256,
                                    "lruCapacityPerServer": 31250}},
                    {"type": "max-score-picker", "parameters": {"maxNumOfEndpoints": 1}},
                    {"type": "single-profile-handler"}],
        "schedulingProfiles": [{"name": "default", "plugins": [
            {"pluginRef": "queue-scorer", "weight": 1}, {"pluginRef": "kv-cache-scorer",
                                                         "weight": 1},
            {"pluginRef": "prefix-cache-scorer", "weight": 3},
            {"pluginRef": "max-score-picker"}]}],
    }
    bundle = load({(POOL, ("metadata", "annotations", PICKER_ANNOTATION)): "default"},
                  extra=[upstream])
    pool = bundle.inference_pools[0]
    found = bundle.picker_config_for(pool)
    assert found is not None
    assert (found.namespace, found.name) == ("default", "default")


@pytest.mark.parametrize("mode", ["round-robin", "random", "least-request", "default",
                                  "predicted-latency"])
def test_every_load_balancing_mode_is_accepted(mode: str) -> None:
    bundle = load({(POOL, ("metadata", "annotations")): {LB_ANNOTATION: mode}},
                  extra=[])
    assert bundle.inference_pools[0].load_balancing == mode
    assert bundle.inference_pools[0].endpoint_picker_config is None

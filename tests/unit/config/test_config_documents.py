"""Document-level checks: apiVersion/kind lookup, ObjectMeta, status, ``kind: List``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import yaml

from inferlane.config.loader import load_config_text
from inferlane.errors import ConfigError

if TYPE_CHECKING:
    from conftest import World

DELETE = "<delete>"


@pytest.mark.parametrize(
    ("path", "value", "where", "fragment"),
    [
        (("metadata", "name"), DELETE, "metadata.name", "required field"),
        (("metadata", "name"), "Bad_Name", "metadata.name", "is not a valid name"),
        (("metadata", "name"), "a" * 254, "metadata.name", "at most 253 characters"),
        (("metadata", "name"), "-a", "metadata.name", "is not a valid name"),
        (("metadata", "name"), 7, "metadata.name", "must be a string"),
        (("metadata", "namespace"), "a.b", "metadata.namespace", "is not a valid namespace"),
        (("metadata", "namespace"), "x" * 64, "metadata.namespace", "is not a valid namespace"),
        (("metadata", "labels"), {"-x": "a"}, 'metadata.labels["-x"]', "is not a valid key"),
        (("metadata", "labels"), {"Foo_/x": "a"}, 'metadata.labels["Foo_/x"]',
         "prefix before"),
        (("metadata", "labels"), {"a": "b c"}, "metadata.labels.a", "not a valid label value"),
        (("metadata", "labels"), {"a": "x" * 64}, "metadata.labels.a", "not a valid label value"),
        (("metadata", "labels"), {"version": 1}, "metadata.labels.version", 'quote it: "1"'),
        (("metadata", "labels"), {"on": True}, "metadata.labels.on", "quote the value"),
        (("metadata", "labels"), ["a"], "metadata.labels", "must be a mapping"),
        (("metadata", "annotations"), {"a b": "x"}, 'metadata.annotations["a b"]',
         "is not a valid key"),
        (("metadata", "nmae"), "x", "metadata.nmae", 'did you mean "name"'),
        (("metadata",), "gw", "metadata", "must be a mapping"),
        (("metadata",), DELETE, "metadata", "required field"),
        (("spec",), DELETE, "spec", "required field"),
        (("spce",), {}, "spce", 'did you mean "spec"'),
        (("status",), "ok", "status", "must be a mapping"),
        (("apiVersion",), DELETE, "apiVersion", "required field"),
        (("apiVersion",), 1, "apiVersion", "must be a string"),
        (("kind",), DELETE, "kind", "required field"),
        (("kind",), "Gatway", "kind", 'did you mean "Gateway"'),
        (("kind",), "Service", "kind", "known kinds: BackendSet"),
        (("apiVersion",), "gateway.networking.k8s.io/v2", "apiVersion",
         "use gateway.networking.k8s.io/v1 or gateway.networking.k8s.io/v1beta1"),
    ],
)
def test_document_and_metadata_errors(world: World, path: tuple[Any, ...], value: Any,
                                      where: str, fragment: str) -> None:
    world.expect(world.errors([("gateway", path, value)]), where, fragment)


def test_pasted_kubectl_output_loads(world: World) -> None:
    metadata = {
        "name": "gw", "namespace": "default", "uid": "0c6b", "resourceVersion": "123",
        "generation": 2, "creationTimestamp": "2025-01-01T00:00:00Z",
        "deletionTimestamp": None, "deletionGracePeriodSeconds": 30,
        "ownerReferences": [{"kind": "X"}], "finalizers": ["a/b"], "managedFields": [{}],
        "generateName": "gw-", "selfLink": "/apis/x", "labels": {"app.kubernetes.io/name": "gw"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"},
    }
    status = {"conditions": [{"type": "Accepted", "status": "True"}]}
    bundle = world.load([("gateway", ("metadata",), metadata), ("gateway", ("status",), status)])
    gateway = bundle.gateways[0]
    assert gateway.name == "gw"
    assert gateway.key == ("Gateway", "default", "gw")
    assert gateway.metadata.labels == {"app.kubernetes.io/name": "gw"}


def test_kind_list_is_unpacked(world: World) -> None:
    docs = world.docs()
    listed = {"apiVersion": "v1", "kind": "List", "items": docs[1:]}
    text = yaml.safe_dump_all([docs[0], listed], sort_keys=False)
    bundle = load_config_text(text)
    assert [r.name for r in bundle.http_routes] == ["route"]
    assert len(bundle.model_servers) == 1


def test_kind_list_items_report_their_own_paths(world: World) -> None:
    docs = world.docs([("route", ("spec", "rules", 0, "backendRefs", 0, "weight"), -5)])
    text = yaml.safe_dump_all([docs[0], {"apiVersion": "v1", "kind": "List", "items": docs[1:]}],
                              sort_keys=False)
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "list.yaml")
    (issue,) = caught.value.issues
    assert (issue.kind, issue.name, issue.path) == ("HTTPRoute", "route",
                                                    "spec.rules[0].backendRefs[0].weight")
    assert issue.line == text.splitlines().index(
        next(line for line in text.splitlines() if "weight: -5" in line)) + 1


def test_kind_list_without_items_list() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text("apiVersion: v1\nkind: List\nitems: {}\n")
    assert any(i.kind == "List" and i.path == "items" for i in caught.value.issues)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "each document must be a mapping"),
        ("just a string\n", "each document must be a mapping"),
        ("42\n", "each document must be a mapping"),
    ],
)
def test_non_mapping_documents(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)
    first = caught.value.issues[0]
    assert (first.kind, first.name) == ("?", "?")
    assert message in first.message


def test_non_string_mapping_key(world: World) -> None:
    found = world.errors([("gateway", ("metadata", "labels"), {1: "a"})])
    world.expect(found, "metadata.labels[1]", "invalid key: must be a string")

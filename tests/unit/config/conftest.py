"""A small valid config "world" that tests patch one field at a time.

``world.text(patches)`` renders the five baseline documents (one per kind) with changes
applied; ``world.errors(...)``/``world.warnings(...)`` load it and return ``(path, message)``
pairs, and ``world.expect(found, path, fragment)`` asserts one is there, so a table row only
names the field it breaks and what the issue should say.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import pytest
import yaml

from inferlane.config.loader import ConfigBundle, load_config_text
from inferlane.errors import ConfigError, ConfigIssue

DELETE = "<delete>"  # patch value that removes the key
Patch = tuple[str, tuple[Any, ...], Any]  # (document, path inside it, new value)

BASELINE: dict[str, dict[str, Any]] = {
    "gateway": {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {"gatewayClassName": "inferlane",
                 "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]},
    },
    "route": {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "route"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                "backendRefs": [{"group": "inference.networking.k8s.io",
                                 "kind": "InferencePool", "name": "pool"}],
            }],
        },
    },
    "pool": {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": "pool"},
        "spec": {"selector": {"matchLabels": {"app": "llm"}}, "targetPorts": [{"number": 8000}]},
    },
    "server": {
        "apiVersion": "inferlane.dev/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": "server", "labels": {"app": "llm"}},
        "spec": {"address": "127.0.0.1:18000", "models": ["m"]},
    },
    "rewrite": {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceModelRewrite",
        "metadata": {"name": "rewrite"},
        "spec": {"poolRef": {"name": "pool"},
                 "rules": [{"matches": [{"model": {"value": "m-canary"}}],
                            "targets": [{"modelRewrite": "m", "weight": 9},
                                        {"modelRewrite": "m-lora"}]}]},
    },
}


def _apply(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = doc
    for part in path[:-1]:
        if isinstance(target, dict) and part not in target:
            target[part] = {}
        target = target[part]
    if value == DELETE:
        target.pop(path[-1], None)
    elif isinstance(target, list) and path[-1] == len(target):
        target.append(value)
    else:
        target[path[-1]] = value


def baseline(name: str, **changes: Any) -> dict[str, Any]:
    """A fresh copy of one baseline document with top-level keys replaced."""
    doc = copy.deepcopy(BASELINE[name])
    doc.update(copy.deepcopy(changes))
    return doc


class World:
    doc = staticmethod(baseline)

    def docs(self, patches: Sequence[Patch] = ()) -> list[dict[str, Any]]:
        docs = copy.deepcopy(BASELINE)
        for name, path, value in patches:
            _apply(docs[name], path, copy.deepcopy(value))
        return list(docs.values())

    def text(self, patches: Sequence[Patch] = (), extra: Sequence[dict[str, Any]] = ()) -> str:
        return yaml.safe_dump_all([*self.docs(patches), *extra], sort_keys=False)

    def load(self, patches: Sequence[Patch] = (),
             extra: Sequence[dict[str, Any]] = ()) -> ConfigBundle:
        return load_config_text(self.text(patches, extra), "test.yaml")

    def issues(self, patches: Sequence[Patch] = (),
               extra: Sequence[dict[str, Any]] = ()) -> list[ConfigIssue]:
        try:
            self.load(patches, extra)
        except ConfigError as exc:
            return list(exc.issues)
        return []

    def errors(self, patches: Sequence[Patch] = (),
               extra: Sequence[dict[str, Any]] = ()) -> list[tuple[str, str]]:
        return [(i.path, i.message) for i in self.issues(patches, extra)]

    def warnings(self, patches: Sequence[Patch] = (),
                 extra: Sequence[dict[str, Any]] = ()) -> list[tuple[str, str]]:
        return [(w.path, w.message) for w in self.load(patches, extra).warnings]

    @staticmethod
    def expect(found: list[tuple[str, str]], path: str, fragment: str) -> None:
        """``found`` has an issue at exactly ``path`` whose message contains ``fragment``."""
        assert any(p == path and fragment in m for p, m in found), (
            f"expected {path}: ...{fragment}...; got:\n"
            + "\n".join(f"{p}: {m}" for p, m in found))


@pytest.fixture
def world() -> World:
    return World()

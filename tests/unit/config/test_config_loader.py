"""The public API: load_config_text/load_config_file, ConfigBundle lookups, issue reporting."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from inferlane.config.loader import ConfigBundle, load_config_file, load_config_text
from inferlane.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from conftest import World

DEFAULT_YAML = resources.files("inferlane").joinpath("examples/default.yaml")


def test_bundle_groups_resources_by_kind(world: World) -> None:
    bundle = world.load()
    assert isinstance(bundle, ConfigBundle)
    assert bundle.source == "test.yaml"
    assert [len(x) for x in (bundle.gateways, bundle.http_routes, bundle.inference_pools,
                             bundle.model_servers, bundle.model_rewrites)] == [1, 1, 1, 1, 1]
    assert bundle.warnings == ()


def test_bundle_lookups(world: World) -> None:
    bundle = world.load()
    pool = bundle.pool("default", "pool")
    gateway = bundle.gateway("default", "gw")
    assert pool is bundle.inference_pools[0]
    assert gateway is bundle.gateways[0]
    assert bundle.pool("other", "pool") is None
    assert bundle.gateway("default", "nope") is None
    assert bundle.model_server("default", "server") is bundle.model_servers[0]
    assert bundle.model_server("default", "nope") is None
    assert bundle.servers_for(pool) == bundle.model_servers
    assert bundle.rewrites_for(pool) == bundle.model_rewrites
    assert bundle.routes_for(gateway) == bundle.http_routes


def test_bundle_is_frozen(world: World) -> None:
    bundle = world.load()
    with pytest.raises(AttributeError):
        bundle.source = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        bundle.gateways[0].metadata.name = "x"  # type: ignore[misc]


def test_all_issues_are_collected_in_file_order(world: World) -> None:
    patches = [("gateway", ("spec", "listeners", 0, "port"), 0),
               ("route", ("spec", "rules", 0, "backendRefs", 0, "name"), "missing"),
               ("server", ("spec", "engine"), "tgi"),
               ("rewrite", ("spec", "poolRef", "name"), "missing")]
    issues = world.issues(patches)
    assert [(i.kind, i.path) for i in issues] == [
        ("Gateway", "spec.listeners[0].port"),
        ("HTTPRoute", "spec.rules[0].backendRefs[0].name"),
        ("ModelServer", "spec.engine"),
        ("InferenceModelRewrite", "spec.poolRef.name"),
    ]
    lines = [i.line for i in issues]
    assert lines == sorted(lines)
    assert all(i.file == "test.yaml" for i in issues)


def test_issue_text_points_at_file_line_and_field(world: World) -> None:
    text = world.text([("route", ("spec", "rules", 0, "backendRefs", 0, "wieght"), 2)])
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "gw.yaml")
    (issue,) = caught.value.issues
    line = 1 + next(i for i, row in enumerate(text.splitlines()) if "wieght" in row)
    assert str(issue) == (f"gw.yaml:{line}: HTTPRoute/route: spec.rules[0].backendRefs[0].wieght:"
                          ' unknown field (did you mean "weight"?)')
    assert str(caught.value) == str(issue)


def test_missing_name_is_reported_as_question_mark(world: World) -> None:
    issues = world.issues([("pool", ("metadata", "name"), "<delete>")])
    assert ("InferencePool", "?", "metadata.name") in [(i.kind, i.name, i.path) for i in issues]


def test_warnings_carry_lines(world: World) -> None:
    text = world.text([("route", ("spec", "rules", 0, "sessionPersistence"),
                        {"type": "Header", "sessionName": "x-user", "cookieConfig": {}})])
    bundle = load_config_text(text, "w.yaml")
    (warning,) = bundle.warnings
    assert isinstance(warning, ConfigIssue)
    assert warning.line == 1 + next(i for i, row in enumerate(text.splitlines())
                                    if "cookieConfig:" in row)


def test_load_config_file(tmp_path: Path, world: World) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(world.text(), encoding="utf-8")
    assert load_config_file(path).source == str(path)
    assert load_config_file(str(path)).gateways[0].name == "gw"


def test_load_config_file_with_bom(tmp_path: Path, world: World) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + world.text().encode())
    assert load_config_file(path).gateways[0].name == "gw"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "cannot read config file"), (b"a: \xff\xfe\n", "not UTF-8"),
     (b"", "no Gateway defined")],
)
def test_load_config_file_errors(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "gw.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    (issue,) = caught.value.issues
    assert issue.file == str(path)
    assert fragment in issue.message


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(tmp_path)


def test_bundled_default_config_is_valid() -> None:
    bundle = load_config_file(str(DEFAULT_YAML))
    assert bundle.warnings == ()
    assert [(g.name, [(lis.name, lis.port, lis.protocol) for lis in g.spec.listeners])
            for g in bundle.gateways] == [("inferlane", [("http", 8080, "HTTP")])]
    assert [(s.name, s.host, s.port, s.metadata.labels["app"]) for s in bundle.model_servers] == [
        ("llama-0", "127.0.0.1", 18000, "llama"), ("llama-1", "127.0.0.1", 18001, "llama"),
        ("qwen-0", "127.0.0.1", 18002, "qwen"), ("qwen-1", "127.0.0.1", 18003, "qwen")]
    llama, qwen = bundle.inference_pools
    assert (llama.name, llama.load_balancing) == ("llama-pool", "default")
    assert (qwen.name, qwen.load_balancing) == ("qwen-pool", "least-request")
    assert [s.name for s in bundle.servers_for(llama)] == ["llama-0", "llama-1"]
    route = bundle.http_routes[0]
    assert [m.headers[0].value for m in route.spec.rules[0].matches] == [
        "llama-3-8b", "llama-3-8b-canary"]
    (rewrite,) = bundle.rewrites_for(llama)
    assert [(t.model_rewrite, t.weight) for t in rewrite.spec.rules[0].targets] == [
        ("llama-3-8b", 90), ("llama-3-8b-lora-sql", 10)]

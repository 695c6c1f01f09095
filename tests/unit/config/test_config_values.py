"""Small pure helpers: path printing, durations, hostname matching, label keys, suggestions."""

from __future__ import annotations

import pytest

from inferlane.config.attachment import hostname_matches, hostnames_intersect
from inferlane.config.issues import show, suggest
from inferlane.config.paths import format_path
from inferlane.config.resources import parse_duration
from inferlane.config.resources.meta import check_label_key, check_label_value


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("spec",), "spec"),
        (("spec", "rules", 0, "backendRefs", 1, "weight"), "spec.rules[0].backendRefs[1].weight"),
        (("metadata", "annotations", "inferlane.dev/load-balancing"),
         'metadata.annotations["inferlane.dev/load-balancing"]'),
        (("labels", "app-name_x"), "labels.app-name_x"),
        (("labels", "-x"), 'labels["-x"]'),
        (("labels", "1x"), 'labels["1x"]'),
        (("m", True), 'm["True"]'),
        ((0, "a"), "[0].a"),
    ],
)
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0.0), ("10s", 10.0), ("500ms", 0.5), ("1h30m", 5400.0), ("1m1s1ms", 61.001),
     ("99999h", 99999 * 3600.0), ("1h1m1s1ms", 3661.001)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1d", "1.5s", "-1s", "100000s", "1s1s1s1s1s", "1 s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a Gateway API duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("pattern", "hostname", "matches"),
    [
        ("a.example.com", "a.example.com", True),
        ("a.example.com", "b.example.com", False),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "*.foo.example.com", True),
        ("*.foo.example.com", "*.example.com", False),
    ],
)
def test_hostname_matches(pattern: str, hostname: str, matches: bool) -> None:
    assert hostname_matches(pattern, hostname) is matches


@pytest.mark.parametrize(
    ("listener", "route", "intersect"),
    [
        (None, [], True),
        (None, ["a.example.com"], True),
        ("a.example.com", [], True),
        ("*.example.com", ["x.example.com"], True),
        ("x.example.com", ["*.example.com"], True),
        ("x.example.com", ["y.example.com", "x.example.com"], True),
        ("x.example.com", ["y.example.com"], False),
        ("*.example.com", ["example.com"], False),
    ],
)
def test_hostnames_intersect(listener: str | None, route: list[str], intersect: bool) -> None:
    assert hostnames_intersect(listener, route) is intersect


@pytest.mark.parametrize(
    ("key", "ok"),
    [("app", True), ("app.kubernetes.io/name", True), ("a_b-c.d", True), ("x" * 63, True),
     ("x" * 64, False), ("-a", False), ("a-", False), ("/a", False), ("Foo_/a", False),
     ("a/b/c", False), ("", False)],
)
def test_label_keys(key: str, ok: bool) -> None:
    assert (check_label_key(key) is None) is ok


@pytest.mark.parametrize(("value", "ok"),
                         [("", True), ("v1", True), ("a.b_c-d", True), ("a b", False),
                          ("x" * 64, False), ("_a", False)])
def test_label_values(value: str, ok: bool) -> None:
    assert (check_label_value(value) is None) is ok


@pytest.mark.parametrize(
    ("word", "choices", "expected"),
    [
        ("wieght", ["name", "weight"], "weight"),
        ("BackendRefs", ["backendRefs"], "backendRefs"),
        ("backend_refs", ["backendRefs"], "backendRefs"),
        ("model", ["modelRewrite", "weight"], "modelRewrite"),
        ("zzz", ["name", "weight"], None),
        ("nam", ["name", "namespace"], "name"),  # ambiguous prefix: closest wins
    ],
)
def test_suggest(word: str, choices: list[str], expected: str | None) -> None:
    assert suggest(word, choices) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "null"), (True, "true"), (False, "false"), ("a", '"a"'), (3, "3"), ({}, "a mapping"),
     ([], "a list"), ("x" * 100, '"' + "x" * 56 + '..."')],
)
def test_show(value: object, text: str) -> None:
    assert show(value) == text

"""YAML in, data plus lines out: line lookups, strictness, and how YAML problems are reported."""

from __future__ import annotations

import textwrap

import pytest

from inferlane.config import yaml_source
from inferlane.config.loader import load_config_text
from inferlane.config.yaml_source import parse_documents
from inferlane.errors import ConfigError

DOC = textwrap.dedent("""\
    # comment
    apiVersion: v1
    kind: Thing
    metadata:
      name: x
    spec:
      rules:
        - name: a
          backendRefs:
            - name: p
              weight: 5
            - name: q
              weight: 7
        - name: b
    """)


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ((), 2),
        (("apiVersion",), 2),
        (("metadata", "name"), 5),
        (("spec", "rules"), 7),
        (("spec", "rules", 0), 8),
        (("spec", "rules", 0, "backendRefs", 1, "weight"), 13),
        (("spec", "rules", 1, "name"), 14),
        # fall back to the nearest parent that exists
        (("spec", "rules", 0, "backendRefs", 1, "wieght"), 12),
        (("spec", "rules", 5, "name"), 7),
        (("status",), 2),
    ],
)
def test_line_for_paths(path: tuple[str | int, ...], line: int) -> None:
    (document,), issues = parse_documents(DOC, "f.yaml")
    assert issues == []
    assert document.lines.line_for(path) == line
    assert document.line == 2


def test_data_is_plain_python() -> None:
    (document,), _ = parse_documents(DOC, "f.yaml")
    assert document.data["spec"]["rules"][0]["backendRefs"][1] == {"name": "q", "weight": 7}


def test_empty_documents_are_skipped() -> None:
    text = "---\n# nothing\n---\n~\n---\na: 1\n---\n"
    documents, issues = parse_documents(text, "f.yaml")
    assert issues == []
    assert [(d.index, d.data, d.line) for d in documents] == [(2, {"a": 1}, 6)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("v: 2024-01-01\n", "2024-01-01"),  # timestamps stay strings
        ("v: 2024-01-01T10:00:00Z\n", "2024-01-01T10:00:00Z"),
        ("v: yes\n", True),  # YAML 1.1, as Kubernetes' decoder
        ("v: 0x1F\n", 31),
        ("v: '8080'\n", "8080"),
        ("v: 1.5\n", 1.5),
        ("v: ~\n", None),
    ],
)
def test_scalars(text: str, value: object) -> None:
    (document,), _ = parse_documents(text, "f.yaml")
    assert document.data == {"v": value}


def test_anchors_aliases_and_merge_keys() -> None:
    text = textwrap.dedent("""\
        base: &base {a: 1, b: 2}
        merged:
          <<: *base
          b: 3
        alias: *base
        """)
    (document,), _ = parse_documents(text, "f.yaml")
    assert document.problems == ()
    assert document.data["merged"] == {"a": 1, "b": 3}
    assert document.data["alias"] == {"a": 1, "b": 2}
    assert document.lines.line_for(("merged", "b")) == 4


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("a: 1\nb: 2\na: 3\n", ("a",), 'duplicate key "a" (first on line 1)'),
        ("m:\n  x: 1\n  x: 2\n", ("m", "x"), 'duplicate key "x" (first on line 2)'),
        ("a: !custom 1\n", ("a",), "unsupported YAML tag !custom"),
        ("a: !!set {x, y}\n", ("a",), "unsupported YAML tag"),
        ("a: !!omap [x: 1]\n", ("a",), "unsupported YAML tag"),
        ("a: &x [*x]\n", ("a", 0), "recursive YAML alias"),
        ("? [a, b]\n: c\n", (), "mapping keys must be plain scalars"),
        ("a: !!int x\n", ("a",), "invalid YAML value"),
        ("a: 1\n<<: 5\n", (), "invalid YAML merge"),
    ],
)
def test_document_problems(text: str, path: tuple[str | int, ...], fragment: str) -> None:
    (document,), issues = parse_documents(text, "f.yaml")
    assert issues == []
    assert any(p == path and fragment in m for p, m in document.problems), document.problems


def test_alias_expansion_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_source, "MAX_NODES_PER_DOCUMENT", 50)
    text = "a: &a [1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"
    (document,), _ = parse_documents(text, "f.yaml")
    assert document.data is None
    assert "more than 50 nodes" in document.problems[0][1]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a: [1, 2\n", 2, "YAML syntax error"),
        ("a: 1\n---\nb: {c: d\n", 4, "YAML syntax error"),
        ("a: b: c\n", 1, "mapping values are not allowed"),
        ("a:\n\t- b\n", 2, "YAML syntax error"),
    ],
)
def test_syntax_errors_have_lines(text: str, line: int, fragment: str) -> None:
    _, issues = parse_documents(text, "f.yaml")
    (issue,) = issues
    assert (issue.kind, issue.name, issue.file, issue.line) == ("?", "?", "f.yaml", line)
    assert fragment in issue.message


def test_reader_error_without_mark() -> None:
    _, issues = parse_documents("a: \x07\n", "f.yaml")
    assert issues[0].message.startswith("YAML")


def test_duplicate_key_becomes_a_config_error_with_line() -> None:
    text = textwrap.dedent("""\
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata:
          name: gw
          name: gw2
        spec:
          gatewayClassName: x
          listeners: [{name: http, port: 80, protocol: HTTP}]
        """)
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "dup.yaml")
    (issue,) = caught.value.issues
    assert str(issue) == ('dup.yaml:5: Gateway/gw2: metadata.name: duplicate key "name" '
                          "(first on line 4)")


def test_syntax_error_skips_cross_checks() -> None:
    # The documents before the error are still checked on their own, but nothing is reported
    # as missing: the rest of the stream was never read.
    text = "apiVersion: v1\nkind: Nope\n---\na: [\n"
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "f.yaml")
    messages = [i.message for i in caught.value.issues]
    assert any("YAML syntax error" in m for m in messages)
    assert any('unknown kind "Nope"' in m for m in messages)
    assert not any("no Gateway" in m for m in messages)

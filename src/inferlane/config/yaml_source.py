"""Multi-document YAML in, plain Python data plus the line of every node out.

First step of config loading (see ``loader``): the text is composed into YAML nodes (libyaml's
C parser when available) and turned into dicts/lists/scalars by hand, so that each key and list
item keeps its line. A ``LineMap`` then answers "which line is ``spec.rules[0].weight`` on?",
falling back to the nearest parent that exists, so every ConfigIssue can say ``file:line``.

Stricter than ``yaml.safe_load`` on purpose: duplicate keys are an error (the Go YAML decoders
Kubernetes uses reject them too), unknown tags are an error, and alias expansion is bounded.
Timestamps stay strings because every field that could hold one is a string upstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from inferlane.config.paths import Path, PathPart
from inferlane.errors import ConfigIssue

_ComposeLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_PLAIN_SCALAR_TAGS: Final = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null"))
_TIMESTAMP_TAG: Final = _TAG + "timestamp"
_MERGE_TAG: Final = _TAG + "merge"

# Bounds alias expansion ("billion laughs"); real configs are a few thousand nodes.
MAX_NODES_PER_DOCUMENT: Final = 200_000


class LineMap:
    """Line numbers (1-based) of the keys and items of one document, by path."""

    __slots__ = ("_lines", "_prefix", "_root_line")

    def __init__(self, lines: dict[Path, int], root_line: int, prefix: Path = ()) -> None:
        self._lines = lines
        self._root_line = root_line
        self._prefix = prefix

    def line_for(self, path: Sequence[PathPart]) -> int:
        """The line of ``path``, or of its nearest existing parent."""
        full = self._prefix + tuple(path)
        while len(full) > len(self._prefix):
            line = self._lines.get(full)
            if line is not None:
                return line
            full = full[:-1]
        return self._lines.get(self._prefix, self._root_line)

    def child(self, path: Sequence[PathPart]) -> LineMap:
        """A view rooted at ``path`` (used for the items of a ``kind: List``)."""
        full = self._prefix + tuple(path)
        return LineMap(self._lines, self._lines.get(full, self._root_line), full)


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """One non-empty document of a YAML stream."""

    index: int  # position in the stream, counting empty documents too
    data: Any
    lines: LineMap
    # Problems found while building ``data`` (duplicate keys, bad tags), by path in the document.
    problems: tuple[tuple[Path, str], ...] = field(default=())

    @property
    def line(self) -> int:
        return self.lines.line_for(())


def parse_documents(text: str, source: str) -> tuple[list[YamlDocument], list[ConfigIssue]]:
    """Split ``text`` into documents; a syntax error ends the stream with one issue."""
    documents: list[YamlDocument] = []
    issues: list[ConfigIssue] = []
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=_ComposeLoader)):
            if node is None or (isinstance(node, ScalarNode) and node.tag == _TAG + "null"):
                continue  # empty document, e.g. a trailing "---"
            documents.append(_build_document(index, node))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        issues.append(ConfigIssue("?", "?", "", f"YAML syntax error: {problem}{context}",
                                  file=source, line=line))
    except yaml.YAMLError as exc:  # reader errors (e.g. control characters) carry no mark
        issues.append(ConfigIssue("?", "?", "", f"YAML error: {exc}", file=source))
    return documents, issues


class _TooLarge(Exception):
    pass


class _Builder:
    """Turns one document's node graph into Python data, recording lines and problems."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.problems: list[tuple[Path, str]] = []
        self._constructor = SafeConstructor()
        self._budget = MAX_NODES_PER_DOCUMENT
        self._active: set[int] = set()  # nodes on the current path, to catch recursive aliases

    def build(self, node: Node, path: Path) -> Any:
        self._budget -= 1
        if self._budget < 0:
            raise _TooLarge
        self.lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in self._active:
            self.problems.append((path, "recursive YAML alias"))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return self._sequence(node, path)
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: Node, path: Path) -> Any:
        if node.tag == _TIMESTAMP_TAG:
            return node.value
        if node.tag not in _PLAIN_SCALAR_TAGS:
            self.problems.append((path, f"unsupported YAML tag {node.tag}"))
            return None
        try:
            return self._constructor.construct_object(node, deep=True)
        except (ConstructorError, ValueError):  # e.g. "!!int x"
            kind = str(node.tag).rsplit(":", 1)[-1]
            self.problems.append((path, f'invalid YAML value "{node.value}" for tag !!{kind}'))
            return None

    def _sequence(self, node: SequenceNode, path: Path) -> Any:
        if node.tag != _TAG + "seq":
            self.problems.append((path, f"unsupported YAML tag {node.tag}"))
            return None
        return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]

    def _mapping(self, node: MappingNode, path: Path) -> Any:
        if node.tag != _TAG + "map":
            self.problems.append((path, f"unsupported YAML tag {node.tag}"))
            return None
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self._scalar(key_node, path)
            line = key_node.start_mark.line + 1
            if key in seen:
                self.problems.append(((*path, key), f'duplicate key "{key}" (first on line '
                                                    f"{seen[key]})"))
            else:
                seen[key] = line
        if any(k.tag == _MERGE_TAG for k, _ in node.value):
            try:
                self._constructor.flatten_mapping(node)  # "<<: *base": merged keys first
            except ConstructorError as exc:
                self.problems.append((path, f"invalid YAML merge: {exc.problem}"))
                return None
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.problems.append((path, "mapping keys must be plain scalars"))
                continue
            key = self._scalar(key_node, path)
            child = (*path, key)
            # Later keys win, like the merge semantics; explicit duplicates are reported above.
            self.lines[child] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, child)
        return result


def _build_document(index: int, node: Node) -> YamlDocument:
    builder = _Builder()
    root_line = node.start_mark.line + 1
    try:
        data = builder.build(node, ())
    except _TooLarge:
        data = None
        builder.problems.append(((), f"document has more than {MAX_NODES_PER_DOCUMENT} nodes "
                                     "once aliases are expanded"))
    return YamlDocument(index, data, LineMap(builder.lines, root_line), tuple(builder.problems))

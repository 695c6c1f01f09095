"""Field paths inside a config document and how issues print them.

A path is the sequence of mapping keys and list indexes from the document root, e.g.
``("spec", "rules", 0, "backendRefs", 1, "weight")``, printed with the upstream camelCase
names as ``spec.rules[0].backendRefs[1].weight``.
"""

from __future__ import annotations

from collections.abc import Sequence

PathPart = str | int  # YAML allows other scalar keys too; format_path copes with them
Path = tuple[PathPart, ...]


def format_path(path: Sequence[PathPart]) -> str:
    """``("spec", "rules", 0, "weight")`` -> ``spec.rules[0].weight``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _is_plain_key(part):
            out += f".{part}" if out else part
        else:
            shown = part if isinstance(part, str) else repr(part)  # e.g. a `true:` key
            out += f'["{shown}"]'
    return out


def _is_plain_key(key: str) -> bool:
    return (bool(key) and (key[0].isalpha() or key[0] == "_")
            and key.replace("-", "").replace("_", "").isalnum())

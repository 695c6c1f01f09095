"""Turns pydantic's validation errors into ConfigIssues a person can act on.

Pydantic reports ``('spec', 'listeners', 0, 'port')`` and "Input should be less than or equal
to 65535"; users want ``spec.listeners[0].port: must be between 1 and 65535`` on the right
line, and a "did you mean" for misspelled fields. To say that, each error's location is walked
back through the model classes to find the field's type and bounds.
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from inferlane.config.paths import Path, PathPart
from inferlane.config.resources.meta import FieldProblems


def validation_problems(error: ValidationError, model: type[BaseModel]) -> list[tuple[Path, str]]:
    """Every problem in ``error`` as ``(path, message)``, paths in upstream camelCase."""
    out: list[tuple[Path, str]] = []
    for detail in error.errors():
        loc: Path = tuple(detail["loc"])
        cause = detail.get("ctx", {}).get("error")
        if isinstance(cause, FieldProblems):
            out.extend(((*loc, *sub), message) for sub, message in cause.problems)
            continue
        if loc and loc[-1] == "[key]":  # a bad key of a mapping
            out.append((loc[:-1], "invalid key: " + _message(detail, model, loc[:-2])))
            continue
        out.append((loc, _message(detail, model, loc)))
    return out


def _message(detail: ErrorDetails, model: type[BaseModel], loc: Path) -> str:
    kind = detail["type"]
    value = detail.get("input")
    ctx = detail.get("ctx", {})
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return _unknown_field(model, loc)
    if kind == "literal_error":
        return _not_one_of(model, loc, value, str(ctx.get("expected", "")))
    if kind == "value_error":
        return str(ctx.get("error", detail["msg"]))
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return _out_of_range(model, loc, value)
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length" if kind == "too_short" else "max_length")
        word = "at least" if kind == "too_short" else "at most"
        noun = "entry" if bound == 1 else "entries"
        if kind == "too_short" and bound == 1:
            return "must not be empty"
        return f"must have {word} {bound} {noun} (has {ctx.get('actual_length')})"
    if kind == "string_too_short":
        bound = ctx.get("min_length")
        return "must not be empty" if bound == 1 else f"must be at least {bound} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters (has {len(str(value))})"
    simple = _TYPE_MESSAGES.get(kind)
    if simple is not None:
        return simple + _type_hint(kind, value)
    return str(detail["msg"])


_TYPE_MESSAGES = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _type_hint(kind: str, value: Any) -> str:
    got = f" (got {show(value)})"
    if kind == "string_type" and isinstance(value, bool):
        return got + "; YAML reads yes/no/on/off/true/false as booleans, quote the value"
    if kind == "string_type" and isinstance(value, int | float):
        return got + f'; quote it: "{value}"'
    if kind in ("int_type", "int_parsing") and isinstance(value, str) and value.isdigit():
        return got + "; write the number without quotes"
    return got


def show(value: Any) -> str:
    """A value as the user wrote it, roughly: strings quoted, YAML spellings of constants."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + '..."'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _unknown_field(model: type[BaseModel], loc: Path) -> str:
    owner = _model_at(model, loc[:-1])
    key = loc[-1] if loc else ""
    if owner is None:
        return "unknown field"
    names = [info.alias or name for name, info in owner.model_fields.items()]
    suggestion = suggest(str(key), names)
    if suggestion is not None:
        return f'unknown field (did you mean "{suggestion}"?)'
    return "unknown field; expected one of: " + ", ".join(names)


def suggest(word: str, choices: Sequence[str]) -> str | None:
    """The closest of ``choices`` to ``word`` (case-insensitively first), or None."""
    lowered = word.lower()
    for choice in choices:
        if choice.lower() in (lowered, lowered.replace("_", "")):
            return choice
    extending = [c for c in choices if len(word) >= 3 and c.lower().startswith(lowered)]
    if len(extending) == 1:  # "model" -> "modelRewrite"
        return extending[0]
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def _not_one_of(model: type[BaseModel], loc: Path, value: Any, expected: str) -> str:
    annotation = _annotation_at(model, loc)
    options = _literal_values(annotation) if annotation is not None else []
    listed = ", ".join(show(o) for o in options) if options else expected
    message = f"must be one of {listed} (got {show(value)})"
    if isinstance(value, str) and options:
        hint = suggest(value, [str(o) for o in options])
        if hint is not None:
            message += f'; did you mean "{hint}"?'
    return message


def _out_of_range(model: type[BaseModel], loc: Path, value: Any) -> str:
    low: Any = None
    high: Any = None
    for item in _metadata_at(model, loc):  # the models only use inclusive bounds (ge/le)
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Le):
            high = item.le
    got = f" (got {show(value)})"
    if low is not None and high is not None:
        return f"must be between {low} and {high}{got}"
    if low is not None:
        return f"must be at least {low}{got}"
    if high is not None:
        return f"must be at most {high}{got}"
    return "is out of range" + got


# -- walking a location back through the model classes ---------------------------------------


def _steps(model: type[BaseModel], loc: Path) -> Iterator[tuple[Any, list[Any]]]:
    """For each prefix of ``loc``: the annotation there and its constraint metadata."""
    current: Any = model
    for part in loc:
        current, _ = unwrap_annotation(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = _field_by_alias(current, part)
            if info is None:
                return
            annotation, metadata = unwrap_annotation(info.annotation)
            yield annotation, [*info.metadata, *metadata]
            current = annotation
        elif get_origin(current) in (list, tuple) and isinstance(part, int):
            annotation, metadata = unwrap_annotation(get_args(current)[0])
            yield annotation, metadata
            current = annotation
        elif get_origin(current) is dict:
            annotation, metadata = unwrap_annotation(get_args(current)[1])
            yield annotation, metadata
            current = annotation
        else:
            return


def _field_by_alias(model: type[BaseModel], part: PathPart) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if info.alias == part or (info.alias is None and name == part):
            return info
    return None


def unwrap_annotation(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` and ``X | None``; return the bare type and collected metadata."""
    metadata: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            base, *extra = get_args(annotation)
            for item in extra:
                metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
            annotation = base
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation, metadata
            annotation = members[0]
        else:
            return annotation, metadata


def _resolve(model: type[BaseModel], loc: Path) -> tuple[Any, list[Any]] | None:
    steps = list(_steps(model, loc))
    return steps[-1] if steps and len(steps) == len(loc) else None


def _model_at(model: type[BaseModel], loc: Path) -> type[BaseModel] | None:
    if not loc:
        return model
    resolved = _resolve(model, loc)
    target = resolved[0] if resolved else None
    return target if isinstance(target, type) and issubclass(target, BaseModel) else None


def _annotation_at(model: type[BaseModel], loc: Path) -> Any:
    resolved = _resolve(model, loc)
    return resolved[0] if resolved else None


def _metadata_at(model: type[BaseModel], loc: Path) -> list[Any]:
    resolved = _resolve(model, loc)
    return resolved[1] if resolved else []


def _literal_values(annotation: Any) -> list[Any]:
    annotation, _ = unwrap_annotation(annotation)
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return []

"""What both translation directions share: the per-field handling table type and the small
typed accessors whose failures are 400s naming the parameter path."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inferlane.errors import BadRequest


class Handling(enum.Enum):
    MAPPED = "mapped"  # translated into the other API
    IGNORED = "ignored"  # accepted and dropped: it cannot change what the model generates
    REJECTED = "rejected"  # 400 unless its value asks for nothing (``inert``)


def null(value: Any) -> bool:
    return value is None


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one top-level request field is handled; ``note`` says why (and, if rejected, what
    the client should do instead — it is the tail of the 400 message)."""

    handling: Handling
    note: str
    inert: Callable[[Any], bool] = null


def is_false(value: Any) -> bool:
    return value is None or value is False


def is_zero(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool)
                             and value == 0)


def is_one(value: Any) -> bool:
    return value is None or (type(value) is int and value == 1)


def is_empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def is_text_format(value: Any) -> bool:
    return value is None or (isinstance(value, Mapping) and dict(value) == {"type": "text"})


def is_text_modality(value: Any) -> bool:
    return value is None or value == ["text"]


def one_of(*allowed: str) -> Callable[[Any], bool]:
    def inert(value: Any) -> bool:
        return value is None or value in allowed

    return inert




def check_fields(body: Mapping[str, Any], table: Mapping[str, FieldRule], *, request: str,
                 provider: str) -> None:
    """400 for the first top-level field the table rejects (with a non-inert value) or lacks."""
    for name, value in body.items():
        rule = table.get(name)
        if rule is None:
            raise BadRequest(f"Unknown parameter '{name}' in a {request} request for a model "
                             f"served by {provider}; remove it.", param=name)
        if rule.handling is Handling.REJECTED and not rule.inert(value):
            raise BadRequest(f"Parameter '{name}' is not supported when the model is served by "
                             f"{provider}: {rule.note}.", param=name)


# -- small typed accessors; each failure is a 400 naming the parameter path ------------------

def mapping(value: Any, param: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadRequest(f"'{param}' must be an object.", param=param)
    return value


def sequence(value: Any, param: str) -> Sequence[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise BadRequest(f"'{param}' must be an array.", param=param)
    return value


def string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"'{param}' must be a string.", param=param)
    return value


def integer(value: Any, param: str, *, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise BadRequest(f"'{param}' must be an integer of at least {minimum}.", param=param)
    return value


def number(value: Any, param: str, *, maximum: float, hint: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"'{param}' must be a number.", param=param)
    if not 0 <= value <= maximum:
        raise BadRequest(f"Parameter '{param}' is {value}, outside 0 to {maximum:g}{hint}; "
                         f"send a value between 0 and {maximum:g}.", param=param)
    return float(value)


def check_keys(item: Mapping[str, Any], allowed: frozenset[str], param: str, *,
               provider: str) -> None:
    for key in item:
        if key not in allowed:
            raise BadRequest(f"'{param}.{key}' is not supported when the model is served by "
                             f"{provider}; remove it.", param=f"{param}.{key}")

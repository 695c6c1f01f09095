"""Reading a plugin's ``parameters`` (from an EndpointPickerConfig) strictly.

Factories read each parameter with a typed accessor and finish with ``done()``, which rejects
unknown keys, so a misspelled parameter is a config error (listing the known ones) instead of a
silently ignored setting. Messages name the plugin and the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class Params:
    """Typed, checked access to one plugin's parameters."""

    __slots__ = ("_known", "_plugin", "_raw")

    def __init__(self, plugin: str, raw: Mapping[str, Any] | None) -> None:
        self._plugin = plugin
        self._raw = dict(raw or {})
        self._known: list[str] = []

    def _get(self, key: str) -> Any:
        self._known.append(key)
        return self._raw.get(key)

    def _fail(self, key: str, expected: str, value: Any) -> ValueError:
        return ValueError(f'{self._plugin}: parameter "{key}" must be {expected} (got {value!r})')

    def number(self, key: str, default: float, *, minimum: float | None = None,
               maximum: float | None = None) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number", value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = (f"between {minimum} and {maximum}" if minimum is not None
                      and maximum is not None else f">= {minimum}" if minimum is not None
                      else f"<= {maximum}")
            raise self._fail(key, f"a number {bounds}", value)
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int | None = None) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer", value)
        if minimum is not None and value < minimum:
            raise self._fail(key, f"an integer >= {minimum}", value)
        return value

    def optional_integer(self, key: str, *, minimum: int | None = None) -> int | None:
        if self._raw.get(key) is None:
            self._known.append(key)
            return None
        return self.integer(key, 0, minimum=minimum)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self._fail(key, "a non-empty string", value)
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self._fail(key, "a list of strings", value)
        return tuple(value)

    def seconds(self, key: str, default: float) -> float:
        """A duration: a number of seconds, or a string such as "2s", "500ms", "1m30s"."""
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, str):
            parts = _DURATION_PART.findall(value)
            if parts and "".join(n + u for n, u in parts) == value:
                return sum(float(n) * _UNITS[u] for n, u in parts)
        elif not isinstance(value, bool) and isinstance(value, int | float) and value >= 0:
            return float(value)
        raise self._fail(key, 'a duration (seconds, or a string like "2s" or "500ms")', value)

    def seed(self) -> int | None:
        return self.optional_integer("seed")

    def done(self) -> None:
        """Reject parameters no accessor asked for."""
        unknown = sorted(set(self._raw) - set(self._known))
        if unknown:
            known = ", ".join(sorted(set(self._known))) or "none"
            raise ValueError(f"{self._plugin}: unknown parameter"
                             f"{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(repr(k) for k in unknown)} (known: {known})")

"""Registry of picker types: one explicit place maps a type name to a factory.

Config names a picker type (``inferlane.dev/load-balancing`` on an InferencePool today, an
EndpointPickerConfig later); the snapshot builder asks this registry for an instance. Third
parties add a type with ``register_picker`` instead of editing the core.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from inferlane.scheduling.interfaces import Picker
from inferlane.scheduling.plugins.random_picker import RandomPicker
from inferlane.scheduling.plugins.round_robin import RoundRobinPicker

PickerFactory = Callable[[str, Mapping[str, Any]], Picker]

_PICKERS: dict[str, PickerFactory] = {
    "round-robin": lambda name, params: RoundRobinPicker(),
    "random": lambda name, params: RandomPicker(seed=params.get("seed")),
}


def register_picker(type_name: str, factory: PickerFactory) -> None:
    if type_name in _PICKERS:
        raise ValueError(f"picker type {type_name!r} is already registered")
    _PICKERS[type_name] = factory


def picker_types() -> tuple[str, ...]:
    return tuple(sorted(_PICKERS))


def build_picker(type_name: str, name: str = "", params: Mapping[str, Any] | None = None) -> Picker:
    try:
        factory = _PICKERS[type_name]
    except KeyError:
        known = ", ".join(picker_types())
        raise ValueError(f"unknown picker type {type_name!r} (known: {known})") from None
    return factory(name, params or {})

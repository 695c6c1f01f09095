"""InferenceModelRewrite: weighted renames of the requested model inside one pool.

Used for canaries of a model version or LoRA adapter: ``llama-canary`` → 90 % ``llama`` and
10 % ``llama-lora-sql``. Precedence (upstream): a rule that matches the model exactly beats a
generic rule (no matches); among equals the oldest wins — outside Kubernetes "oldest" is the
order in the config file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from inferlane.routing.split import WeightedChoice


@dataclass(frozen=True, slots=True)
class RewriteRule:
    models: tuple[str, ...]  # exact model names; empty = every model
    targets: WeightedChoice[str]


@dataclass(frozen=True, slots=True)
class ModelRewriteTable:
    exact: dict[str, WeightedChoice[str]] = field(default_factory=dict)
    generic: WeightedChoice[str] | None = None

    @classmethod
    def build(cls, rules: Iterable[RewriteRule]) -> ModelRewriteTable:
        exact: dict[str, WeightedChoice[str]] = {}
        generic: WeightedChoice[str] | None = None
        for rule in rules:
            if rule.targets.empty:
                continue
            if not rule.models:
                generic = generic or rule.targets
            for model in rule.models:
                exact.setdefault(model, rule.targets)
        return cls(exact, generic)

    def rewrite(self, model: str, unit: float) -> str:
        """The model name to send upstream for ``model``; ``unit`` is uniform in [0, 1)."""
        choice = self.exact.get(model) or self.generic
        return choice.choose(unit) if choice is not None else model

    def source_models(self) -> tuple[str, ...]:
        return tuple(self.exact)

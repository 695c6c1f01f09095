"""Request objectives: ``InferenceObjective`` and the older ``InferenceModel`` (criticality).

An InferenceObjective (inference.networking.x-k8s.io/v1alpha2) gives the requests that name it
in the ``x-gateway-inference-objective`` header a ``priority`` inside one pool: higher is served
first when the pool is saturated, negative is sheddable (answered 429 rather than queued when
the pool is saturated). Unset priority is 0.

Our extensions, as annotations on the objective (inferlane.dev):

* ``inferlane.dev/ttft-target: 1s`` — the time-to-first-token target; the gateway exports how
  often streamed requests of the objective meet it (SLO attainment);
* ``inferlane.dev/deadline: 5s`` — the default time budget of its requests (a client's
  ``x-inferlane-deadline-ms`` header wins): a request that cannot be dispatched in time is
  answered 503 at once instead of late.

A pool names its default objective (for requests without the header) with the pool annotation
``inferlane.dev/default-objective``.

The older ``InferenceModel`` (same group and version) is accepted: its ``criticality`` is an
alias of a priority (``Critical`` 2, ``Standard`` 0, ``Sheddable`` -1) and it applies to requests
whose body ``model`` equals its ``modelName`` (when no objective header is sent); its
``targetModels`` rename the model like an InferenceModelRewrite rule.
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal

from pydantic import Field, model_validator

from inferlane.config.resources.inference import PoolObjectReference
from inferlane.config.resources.meta import (
    ANNOTATION_PREFIX,
    Problems,
    Resource,
    StrictModel,
    parse_duration,
)

TTFT_TARGET_ANNOTATION: Final = ANNOTATION_PREFIX + "ttft-target"
DEADLINE_ANNOTATION: Final = ANNOTATION_PREFIX + "deadline"
Criticality = Literal["Critical", "Standard", "Sheddable"]
CRITICALITY_PRIORITY: Final[dict[str, int]] = {"Critical": 2, "Standard": 0, "Sheddable": -1}


def _check_duration_annotations(resource: Resource) -> None:
    problems = Problems()
    for key in (TTFT_TARGET_ANNOTATION, DEADLINE_ANNOTATION):
        value = resource.metadata.annotations.get(key)
        if value is None:
            continue
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            problems.add(("metadata", "annotations", key), str(exc))
            continue
        if seconds <= 0:
            problems.add(("metadata", "annotations", key), "must be longer than 0s")
    problems.raise_if_any()


def _annotation_seconds(resource: Resource, key: str) -> float | None:
    value = resource.metadata.annotations.get(key)
    return parse_duration(value) if value else None


class _ObjectiveAnnotations(Resource):
    """What both objective kinds read from their annotations."""

    known_annotations: ClassVar[frozenset[str]] = frozenset({TTFT_TARGET_ANNOTATION,
                                                             DEADLINE_ANNOTATION})

    @model_validator(mode="after")
    def _check_annotations(self) -> _ObjectiveAnnotations:
        _check_duration_annotations(self)
        return self

    @property
    def ttft_target(self) -> float | None:
        return _annotation_seconds(self, TTFT_TARGET_ANNOTATION)

    @property
    def deadline(self) -> float | None:
        return _annotation_seconds(self, DEADLINE_ANNOTATION)


class InferenceObjectiveSpec(StrictModel):
    """Priority of the objective's requests within one pool."""

    priority: int | None = Field(
        None, ge=-1000, le=1000,
        description="Higher is dispatched first when the pool is saturated; unset is 0; "
                    "negative is sheddable.")
    pool_ref: PoolObjectReference = Field(alias="poolRef",
                                          description="Pool the objective applies to.")


class InferenceObjective(_ObjectiveAnnotations):
    """A named priority (and, as extensions, a TTFT target and a default deadline).

    Chosen per request by the header ``x-gateway-inference-objective: <name>``; see the module
    docstring for the annotations.
    """

    api_version: Literal["inference.networking.x-k8s.io/v1alpha2"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["InferenceObjective"] = Field(description="Resource kind.")
    spec: InferenceObjectiveSpec = Field(description="Priority and pool.")

    @property
    def priority(self) -> int:
        return self.spec.priority or 0


class InferenceModelTarget(StrictModel):
    """A model name to send instead, with a weight (older form of a rewrite target)."""

    name: str = Field(min_length=1, description="Model name sent to the server.")
    weight: int | None = Field(None, ge=0, le=1_000_000,
                               description="Share relative to the other targets (default 1).")


class InferenceModelSpec(StrictModel):
    """The older per-model objective: a model name, its criticality and optional targets."""

    model_name: str = Field(alias="modelName", min_length=1,
                            description="Requested model name this applies to.")
    criticality: Criticality | None = Field(
        None, description="Critical (priority 2), Standard (0, the default) or Sheddable (-1).")
    pool_ref: PoolObjectReference = Field(alias="poolRef", description="Pool of the model.")
    target_models: list[InferenceModelTarget] = Field(
        default_factory=list, alias="targetModels",
        description="Weighted model names sent instead of modelName (empty: unchanged).")

    @model_validator(mode="after")
    def _check(self) -> InferenceModelSpec:
        problems = Problems()
        if self.target_models and not any((t.weight is None or t.weight > 0)
                                          for t in self.target_models):
            problems.add(("targetModels",), "at least one target needs a weight greater than 0")
        problems.raise_if_any()
        return self


class InferenceModel(_ObjectiveAnnotations):
    """Older form of an objective, selected by the request's model name (see module docstring).

    Same annotations as InferenceObjective.
    """

    api_version: Literal["inference.networking.x-k8s.io/v1alpha2"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["InferenceModel"] = Field(description="Resource kind.")
    spec: InferenceModelSpec = Field(description="Model, criticality, pool and targets.")

    @property
    def priority(self) -> int:
        return CRITICALITY_PRIORITY[self.spec.criticality or "Standard"]

"""The extension points of the scheduling framework, and what a scheduling decision returns.

One request's trip through a pool's scheduler (see ``profile.py`` and ``scheduler.py``)::

    EndpointState[] ──► Filter* ──► Scorer * weight (Σ) ──► Picker ──► PostPick*
                        (drop)      (each score in [0,1])   (choose)   (learn: prefix index,
                                                                        sessions)

Each extension point is one small protocol; a plugin implements one or more of them and the
profile slots it by the methods it has (upstream llm-d does the same with Go interfaces).

The ``Picker`` here is the last plugin of a profile: it chooses among already scored candidates.

Every plugin is pure apart from its own bounded memory: no sockets, no clock (time comes in
``PickRequest.now``), randomness from an injected or seeded ``random.Random``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from inferlane.scheduling.interfaces import Endpoint, PickRequest
from inferlane.scheduling.types import EndpointState


@runtime_checkable
class Filter(Protocol):
    """Drops candidates that must not get the request.

    Returns a subset of ``candidates`` (in their order). A filter that would drop every
    candidate should document what it does instead; the built-in ones keep them all ("panic"),
    so a request is never left with nothing while endpoints exist.
    """

    def filter(self, request: PickRequest,
               candidates: Sequence[EndpointState]) -> list[EndpointState]: ...


@runtime_checkable
class Scorer(Protocol):
    """Rates each candidate for this request: one score per candidate, aligned, each in [0, 1].

    1 is best. The profile multiplies each score by the scorer's weight and sums them; values
    outside [0, 1] (and NaN) are clamped defensively, but a scorer should not rely on it.
    """

    def score(self, request: PickRequest, candidates: Sequence[EndpointState]) -> list[float]: ...


@runtime_checkable
class Picker(Protocol):
    """Chooses among the scored candidates: the index into ``candidates``, or None for none.

    ``totals[i]`` is the weighted score sum of ``candidates[i]`` (all 0 when the profile has no
    scorers). ``candidates`` is never empty when a picker is called.
    """

    def pick(self, request: PickRequest, candidates: Sequence[EndpointState],
             totals: Sequence[float]) -> int | None: ...


@runtime_checkable
class PostPick(Protocol):
    """Learns from the decision once it is made (e.g. records the prompt's blocks there)."""

    def picked(self, request: PickRequest, state: EndpointState) -> None: ...


@runtime_checkable
class TTFTPredictor(Protocol):
    """Estimates the time to first token (seconds) of ``request`` if sent to ``state``."""

    def predict_ttft(self, request: PickRequest, state: EndpointState) -> float: ...


@dataclass(frozen=True, slots=True)
class CandidateScore:
    """Why a candidate ranked where it did: its total and each scorer's (unweighted) score."""

    endpoint: Endpoint
    total: float
    by_scorer: tuple[tuple[str, float], ...]  # (scorer name, clamped score), profile order
    predicted_ttft: float | None = None  # seconds, when the profile has a TTFT predictor


@dataclass(frozen=True, slots=True)
class PickResult:
    """One scheduling decision and its explanation (for the ``x-inferlane-debug`` header).

    ``candidates`` holds the best-ranked candidates, the chosen one first (the others by total,
    highest first). ``eligible`` counts the candidates left after the filters; ``offered`` the
    endpoints the scheduler was given. ``predicted_ttft`` is the chosen endpoint's predicted
    time to first token in seconds (None without a predictor in the profile), to compare with the
    observed TTFT.
    """

    endpoint: Endpoint | None
    candidates: tuple[CandidateScore, ...] = ()
    profile: str = ""
    offered: int = 0
    eligible: int = 0
    predicted_ttft: float | None = None

    def chosen_score(self, scorer: str) -> float | None:
        """The chosen endpoint's score from the scorer named ``scorer``, if it was explained."""
        if not self.candidates:
            return None
        return next((value for name, value in self.candidates[0].by_scorer if name == scorer),
                    None)

    def explain(self) -> str:
        """A compact one-line rendering, e.g. for a debug response header."""
        parts = [f"profile={self.profile}", f"eligible={self.eligible}/{self.offered}"]
        if self.predicted_ttft is not None:
            parts.append(f"predicted_ttft={self.predicted_ttft:.4f}s")
        for candidate in self.candidates:
            scores = " ".join(f"{name}={value:.3f}" for name, value in candidate.by_scorer)
            text = f"{candidate.endpoint.address} total={candidate.total:.3f}"
            if scores:
                text += f" {scores}"
            if candidate.predicted_ttft is not None:
                text += f" ttft={candidate.predicted_ttft:.4f}s"
            parts.append(text)
        return "; ".join(parts)

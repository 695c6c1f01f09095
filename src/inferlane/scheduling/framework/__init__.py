"""The scheduling framework: plugin protocols, profiles and the per-pool Scheduler.

Mirrors llm-d's ``framework/interface/...`` (``interface.py``) next to the built-in plugins in
``scheduling/plugins/{filter,scorer,picker}/``; ``scheduling.registry`` builds profiles from
names. Pure Python, no I/O.
"""

from inferlane.scheduling.framework.interface import (
    CandidateScore,
    Filter,
    Picker,
    PickResult,
    PostPick,
    Scorer,
    TTFTPredictor,
)
from inferlane.scheduling.framework.profile import ProfileRun, SchedulingProfile, WeightedScorer
from inferlane.scheduling.framework.scheduler import (
    DEFAULT_EXPLAIN,
    Scheduler,
    StatesFn,
    bare_states,
)

__all__ = [
    "DEFAULT_EXPLAIN",
    "CandidateScore",
    "Filter",
    "PickResult",
    "Picker",
    "PostPick",
    "ProfileRun",
    "Scheduler",
    "SchedulingProfile",
    "Scorer",
    "StatesFn",
    "TTFTPredictor",
    "WeightedScorer",
    "bare_states",
]

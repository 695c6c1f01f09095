"""Shadow traffic comparison: how a mirrored (shadow) backend compares with the primary.

An HTTPRoute ``RequestMirror`` filter sends a copy of a request to a shadow backend; the client
only ever sees the primary's answer. Once both answers are in, the dataplane feeds their
``Outcome``s here, per (primary model, shadow model) pair. This module is pure: no I/O, no
clock; the dataplane measures, ``ShadowStats`` keeps bounded windows and summarises them for
``GET /admin/shadow`` (and ``inferlane shadow-report``).

Design notes:
- A *sample* is a comparison in which both sides answered 2xx. Latency, TTFT, output tokens and
  similarity are recorded only for samples, so both sides' figures describe the same requests
  (an error's latency or body says nothing about the model; success rates count errors).
- Windows hold the last ``reservoir`` samples per pair; counters are exact.
- Model names come from clients: truncated to ``MAX_MODEL_NAME`` chars, and past ``max_pairs``
  distinct pairs every new pair is folded into ("other", "other"), so memory stays bounded.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal, TypedDict, get_args

MAX_TEXT = 16_384  # chars of an answer's text that are kept and compared
MAX_MODEL_NAME = 200  # chars of a client-supplied model name that are kept
OTHER = "other"

DropReason = Literal["overloaded", "timeout", "error"]
DROP_REASONS: tuple[DropReason, ...] = get_args(DropReason)

_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one side (primary or shadow) answered."""

    status: int  # HTTP status; 0 = no response (connect error / timeout)
    latency: float  # seconds from dispatch to the end of the response
    ttft: float | None = None  # seconds to the first content (streams), None if not measured
    output_tokens: int | None = None  # from usage, None if unknown
    text: str = ""  # the answer's text (truncated to MAX_TEXT chars by the caller)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def statuses_agree(primary: Outcome, shadow: Outcome) -> bool:
    """Both succeeded (any 2xx), or both answered the same status."""
    return (primary.ok and shadow.ok) or primary.status == shadow.status


def is_sample(primary: Outcome, shadow: Outcome) -> bool:
    """Whether a comparison's latencies, tokens and similarity are recorded: both sides 2xx."""
    return primary.ok and shadow.ok


def model_name(name: str) -> str:
    return name[:MAX_MODEL_NAME]


def _shingles(text: str) -> Counter[str]:
    words = _WORD.findall(text.lower())
    shingles = Counter[str](words)
    # Words hold no spaces, so "a b" cannot collide with a unigram.
    shingles.update(f"{first} {second}" for first, second in pairwise(words))
    return shingles


def similarity(a: str, b: str) -> float:
    """How alike two answers read, in [0, 1]; symmetric, 1.0 for identical texts.

    Multiset Jaccard (sum of min counts / sum of max counts) over lower-cased word unigrams and
    bigrams of the first ``MAX_TEXT`` chars. Unigrams credit the same content, bigrams credit the
    same order, so a reordered answer scores between 0 and 1. Case and punctuation are ignored
    (words are ``\\w+`` runs). O(n) in the text length: this runs on the request path for every
    mirrored request, and ``difflib.SequenceMatcher`` is quadratic in the worst case on
    16k-char answers. Two empty texts score 1.0, one empty text 0.0; non-empty texts without
    any word score 1.0 only if identical.
    """
    a, b = a[:MAX_TEXT], b[:MAX_TEXT]
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    left, right = _shingles(a), _shingles(b)
    union = (left | right).total()
    if union == 0:
        return 0.0
    return (left & right).total() / union


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None when there are no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(q * len(ordered) / 100)  # 1-based; q * n first keeps 70 * 10 / 100 exact
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


class SideSummary(TypedDict):
    success_rate: float | None  # share of compared requests answered 2xx
    latency_p50: float | None  # seconds, over samples
    latency_p90: float | None
    ttft_p50: float | None  # seconds, over samples that measured it
    output_tokens_mean: float | None  # over samples that reported usage


class PairSummary(TypedDict):
    primary_model: str
    shadow_model: str
    mirrored: int  # mirror copies started
    compared: int  # both outcomes known
    dropped: dict[str, int]  # every DropReason, 0 included
    status_agreement: float | None  # share of compared with agreeing statuses
    samples: int  # comparisons in the windows (both sides 2xx)
    primary: SideSummary
    shadow: SideSummary
    similarity_mean: float | None
    similarity_p50: float | None


class _Side:
    __slots__ = ("latency", "output_tokens", "successes", "ttft")

    def __init__(self, reservoir: int) -> None:
        self.successes = 0
        self.latency: deque[float] = deque(maxlen=reservoir)
        self.ttft: deque[float] = deque(maxlen=reservoir)
        self.output_tokens: deque[float] = deque(maxlen=reservoir)

    def record(self, outcome: Outcome) -> None:
        self.latency.append(outcome.latency)
        if outcome.ttft is not None:
            self.ttft.append(outcome.ttft)
        if outcome.output_tokens is not None:
            self.output_tokens.append(outcome.output_tokens)

    def summary(self, compared: int) -> SideSummary:
        return SideSummary(
            success_rate=self.successes / compared if compared else None,
            latency_p50=percentile(self.latency, 50),
            latency_p90=percentile(self.latency, 90),
            ttft_p50=percentile(self.ttft, 50),
            output_tokens_mean=mean(self.output_tokens),
        )


class _Pair:
    __slots__ = ("agreements", "compared", "dropped", "mirrored", "primary", "shadow",
                 "similarity")

    def __init__(self, reservoir: int) -> None:
        self.mirrored = 0
        self.compared = 0
        self.agreements = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.primary = _Side(reservoir)
        self.shadow = _Side(reservoir)
        self.similarity: deque[float] = deque(maxlen=reservoir)


class ShadowStats:
    """Per (primary model, shadow model) counters and windows of recent samples."""

    __slots__ = ("_max_pairs", "_pairs", "_reservoir")

    def __init__(self, *, max_pairs: int = 200, reservoir: int = 1024) -> None:
        if max_pairs < 1 or reservoir < 1:
            raise ValueError("ShadowStats: max_pairs and reservoir must be at least 1")
        self._max_pairs = max_pairs
        self._reservoir = reservoir
        self._pairs: dict[tuple[str, str], _Pair] = {}

    def _pair(self, primary_model: str, shadow_model: str) -> _Pair:
        key = (model_name(primary_model), model_name(shadow_model))
        pair = self._pairs.get(key)
        if pair is None:
            if len(self._pairs) >= self._max_pairs:
                key = (OTHER, OTHER)
                pair = self._pairs.get(key)
            if pair is None:
                pair = self._pairs[key] = _Pair(self._reservoir)
        return pair

    def mirrored(self, primary_model: str, shadow_model: str) -> None:
        """A mirror copy was started."""
        self._pair(primary_model, shadow_model).mirrored += 1

    def dropped(self, primary_model: str, shadow_model: str, reason: DropReason) -> None:
        """A mirror copy was given up (shadow overloaded, timed out or failed to connect)."""
        if reason not in DROP_REASONS:
            raise ValueError(f"ShadowStats.dropped: unknown reason {reason!r}; "
                             f"expected one of {', '.join(DROP_REASONS)}")
        self._pair(primary_model, shadow_model).dropped[reason] += 1

    def compared(self, primary_model: str, shadow_model: str,
                 primary: Outcome, shadow: Outcome) -> float:
        """Record both outcomes; return the texts' similarity (recorded only for samples)."""
        pair = self._pair(primary_model, shadow_model)
        score = similarity(primary.text, shadow.text)
        pair.compared += 1
        pair.agreements += statuses_agree(primary, shadow)
        pair.primary.successes += primary.ok
        pair.shadow.successes += shadow.ok
        if is_sample(primary, shadow):
            pair.primary.record(primary)
            pair.shadow.record(shadow)
            pair.similarity.append(score)
        return score

    def summary(self) -> list[PairSummary]:
        """JSON-ready, one entry per pair, sorted by (primary model, shadow model)."""
        return [
            PairSummary(
                primary_model=primary_model,
                shadow_model=shadow_model,
                mirrored=pair.mirrored,
                compared=pair.compared,
                dropped=dict(pair.dropped),
                status_agreement=pair.agreements / pair.compared if pair.compared else None,
                samples=len(pair.similarity),
                primary=pair.primary.summary(pair.compared),
                shadow=pair.shadow.summary(pair.compared),
                similarity_mean=mean(pair.similarity),
                similarity_p50=percentile(pair.similarity, 50),
            )
            for (primary_model, shadow_model), pair in sorted(self._pairs.items())
        ]

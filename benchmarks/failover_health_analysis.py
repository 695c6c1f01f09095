"""The pure pieces of the health-check failover benchmark: schedule, detection, recovery, table.

No I/O and no clock: ``failover_health.py`` records what the clients saw (``Answer``) and what
``GET /admin/health`` said (``HealthSample``), with every time in seconds since the scenario's
load began, and this module turns them into numbers. The unit tests
(``tests/unit/bench/test_failover_health_bench.py``) feed it tables of made-up logs.

Definitions (also in the docs section):

- A request *hit* the dead replica when it was sent while the replica was down (from the kill
  until the fresh process answered ``/health``) and either took
  more than one attempt (``x-inferlane-attempts`` > 1: its first attempt found the refused
  connection and the connect retry went elsewhere) or failed with the dead replica's address in
  ``x-inferlane-endpoint``. Only the killed replica fails in this benchmark, so an extra attempt
  during an outage is that replica's; outages of different replicas must not overlap, or the
  client could not tell which one a retried request met (``parse_schedule`` refuses them).
- *Detection, client view*: send time of the last hit of the outage minus the kill time. When
  hits go on until shortly (``QUIET_WINDOW_S``) before the fresh process answers ``/health``
  (or the next kill), the gateway never stopped:
  not detected (None). No hit at all: nothing to see (NaN, "no hits"; the picker may avoid a
  replica whose last scraped metrics looked busy).
- *Detection, verdict view*: the first ``/admin/health`` poll (answer time) after the kill that
  shows the endpoint not routable (verdict unhealthy, or ejected), minus the kill time.
- *Post-detection hits*: hits sent after the verdict-view detection.
- *Recovery*: from the moment the fresh replica answered ``/health`` to the send time of the
  first request it answered (client view) and to the first poll showing it routable again
  (verdict view), before its next kill or the end of the load.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

QUIET_WINDOW_S = 1.0
_OUTAGE = re.compile(r"\s*(\d+)\s*:\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*")


@dataclass(frozen=True, slots=True)
class Outage:
    """Replica ``replica`` is SIGKILLed at ``kill_at`` and restarted at ``restore_at``
    (seconds since the load began)."""

    replica: int
    kill_at: float
    restore_at: float


def parse_schedule(text: str, replicas: int, duration_s: float) -> tuple[Outage, ...]:
    """``"1:5-15,2:20-30"`` (replica:kill-restore, seconds) -> outages in time order.
    ValueError with the reason when an item is malformed, names no replica of the fleet, ends
    after ``duration_s`` or overlaps another outage."""
    outages: list[Outage] = []
    for item in text.split(","):
        match = _OUTAGE.fullmatch(item)
        if match is None:
            raise ValueError(f"schedule item {item.strip()!r}: write REPLICA:KILL-RESTORE in "
                             "seconds, e.g. 1:5-15")
        replica, kill_at, restore_at = int(match[1]), float(match[2]), float(match[3])
        if replica >= replicas:
            raise ValueError(f"schedule item {item.strip()!r}: replicas are 0-{replicas - 1}")
        if restore_at <= kill_at:
            raise ValueError(f"schedule item {item.strip()!r}: the restore must come after "
                             "the kill")
        if restore_at > duration_s:
            raise ValueError(f"schedule item {item.strip()!r}: the restore is after the end of "
                             f"the load ({duration_s:g} s)")
        outages.append(Outage(replica, kill_at, restore_at))
    outages.sort(key=lambda o: o.kill_at)
    for first, second in itertools.pairwise(outages):
        if second.kill_at < first.restore_at:
            raise ValueError(f"outages {first.replica}:{first.kill_at:g}-{first.restore_at:g} "
                             f"and {second.replica}:{second.kill_at:g}-{second.restore_at:g} "
                             "overlap: a retried request could not be told to have met one "
                             "or the other")
    return tuple(outages)


@dataclass(frozen=True, slots=True)
class Answer:
    """One request as the client saw it."""

    sent: float  # seconds since the load began
    latency: float  # seconds, send to last byte (or to the failure)
    status: int  # 0: no HTTP answer
    endpoint: str  # x-inferlane-endpoint ("" when absent)
    attempts: int  # x-inferlane-attempts (1 when absent)
    error: str = ""  # "" or a short kind: "502", "connect", "timeout", ...

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


@dataclass(frozen=True, slots=True)
class HealthSample:
    """One endpoint in one ``/admin/health`` poll (``at``: when the answer arrived)."""

    at: float
    endpoint: str
    routable: bool
    verdict: str  # healthy | unhealthy | unknown
    ejected: bool


@dataclass(frozen=True, slots=True)
class Kill:
    """An outage as it happened: the actual kill time, the restart and when it answered."""

    outage: Outage
    endpoint: str  # "127.0.0.1:PORT"
    killed: float
    restarted: float
    ready: float  # the fresh replica answered /health


def is_hit(answer: Answer, endpoint: str) -> bool:
    return answer.attempts > 1 or (not answer.ok and answer.endpoint == endpoint)


def hits(answers: Iterable[Answer], kill: Kill, cut: float | None = None) -> list[Answer]:
    """Requests sent during the outage (kill to the fresh process answering /health) that met
    the dead replica, by send time. ``cut`` is the next kill of any replica: a request still
    in flight then may have been retried because of that one, so it is nobody's hit."""
    return sorted((a for a in answers if kill.killed <= a.sent < kill.ready
                   and (cut is None or a.sent + a.latency < cut)
                   and is_hit(a, kill.endpoint)), key=lambda a: a.sent)


def detection_client(answers: Iterable[Answer], kill: Kill,
                     quiet_window_s: float = QUIET_WINDOW_S,
                     cut: float | None = None) -> float | None:
    """Seconds from the kill to the last hit; NaN when nothing hit it (the client saw nothing
    to detect); None when hits went on until ``quiet_window_s`` before the fresh process
    answered /health (or the next kill): never stopped."""
    found = hits(answers, kill, cut)
    if not found:
        return math.nan
    last = found[-1].sent
    if last >= min(kill.ready, math.inf if cut is None else cut) - quiet_window_s:
        return None
    return last - kill.killed


def detection_verdict(samples: Iterable[HealthSample], kill: Kill) -> float | None:
    """Seconds from the kill to the first poll showing the endpoint not routable."""
    for sample in sorted(samples, key=lambda s: s.at):
        if sample.endpoint == kill.endpoint and kill.killed <= sample.at < kill.ready \
                and not sample.routable:
            return sample.at - kill.killed
    return None


def post_detection_hits(answers: Iterable[Answer], kill: Kill, detected: float | None,
                        cut: float | None = None) -> int:
    """Hits sent after the verdict-view detection (0 when it never came)."""
    if detected is None:
        return 0
    return sum(1 for a in hits(answers, kill, cut) if a.sent > kill.killed + detected)


def recovery_client(answers: Iterable[Answer], kill: Kill, until: float) -> float | None:
    """Seconds from the fresh replica's first /health answer to the first request it served
    (sent before ``until``: its next kill or the end)."""
    served = [a.sent for a in answers
              if a.ok and a.endpoint == kill.endpoint and kill.ready <= a.sent < until]
    return min(served) - kill.ready if served else None


def recovery_verdict(samples: Iterable[HealthSample], kill: Kill, until: float) -> float | None:
    for sample in sorted(samples, key=lambda s: s.at):
        if sample.endpoint == kill.endpoint and kill.ready <= sample.at < until \
                and sample.routable:
            return max(sample.at - kill.ready, 0.0)
    return None


# --- per scenario -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KillResult:
    replica: int
    detection_client: float | None
    detection_verdict: float | None
    hits: int
    post_detection_hits: int
    recovery_client: float | None
    recovery_verdict: float | None
    startup: float  # restart to /health answering (the replica's own start-up)


@dataclass(frozen=True, slots=True)
class ScenarioSummary:
    scenario: str
    requests: int
    client_errors: int
    errors_by_kind: dict[str, int]
    retried: int  # answers with x-inferlane-attempts > 1
    retries_metric: float  # inferlane_retries_total delta (nan: not scraped)
    kills: tuple[KillResult, ...]

    @property
    def post_detection_hits(self) -> int:
        return sum(k.post_detection_hits for k in self.kills)


def summarize(scenario: str, answers: Sequence[Answer], samples: Sequence[HealthSample],
              kills: Sequence[Kill], end: float, retries_metric: float = math.nan,
              quiet_window_s: float = QUIET_WINDOW_S) -> ScenarioSummary:
    results = []
    for index, kill in enumerate(kills):
        # Recovery is watched until this replica's next kill, or the end.
        until = next((k.killed for k in kills[index + 1:]
                      if k.outage.replica == kill.outage.replica), end)
        # From the next kill of any replica on, an extra attempt may be that one's (this
        # replica's fresh process may still be starting).
        cut = kills[index + 1].killed if index + 1 < len(kills) else None
        verdict = detection_verdict(samples, kill)
        results.append(KillResult(
            replica=kill.outage.replica,
            detection_client=detection_client(answers, kill, quiet_window_s, cut),
            detection_verdict=verdict,
            hits=len(hits(answers, kill, cut)),
            post_detection_hits=post_detection_hits(answers, kill, verdict, cut),
            recovery_client=recovery_client(answers, kill, until),
            recovery_verdict=recovery_verdict(samples, kill, until),
            startup=kill.ready - kill.restarted))
    errors: dict[str, int] = {}
    for answer in answers:
        if not answer.ok:
            kind = answer.error or str(answer.status)
            errors[kind] = errors.get(kind, 0) + 1
    return ScenarioSummary(scenario, len(answers), sum(errors.values()), errors,
                           sum(1 for a in answers if a.attempts > 1), retries_metric,
                           tuple(results))


def median(values: Sequence[float | None]) -> float | None:
    """Median with None as "never" (infinitely late); None when the median is never. NaN
    values (nothing to measure) are left out; NaN when nothing is left."""
    ordered = sorted(math.inf if v is None else v for v in values
                     if v is None or not math.isnan(v))
    if not ordered:
        return math.nan
    middle = len(ordered) // 2
    value = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return None if math.isinf(value) else value


def worst(values: Sequence[float | None]) -> float | None:
    """The largest value; None ("never") when any is None; NaN values are left out."""
    if any(v is None for v in values):
        return None
    measured = [v for v in values if v is not None and not math.isnan(v)]
    return max(measured) if measured else math.nan


def seconds(value: float | None, never: str = "never") -> str:
    if value is None:
        return never
    return "no hits" if math.isnan(value) else f"{value:.2f}"


HEAD = ("scenario", "kills", "detect client med / max (s)", "detect verdict med / max (s)",
        "client errors", "retried (metric)", "post-detect hits", "recovery med (s)")


def row(summary: ScenarioSummary) -> list[str]:
    kills = summary.kills
    client = [k.detection_client for k in kills]
    verdict = [k.detection_verdict for k in kills]
    metric = "-" if math.isnan(summary.retries_metric) else f"{summary.retries_metric:.0f}"
    return [summary.scenario, str(len(kills)),
            f"{seconds(median(client))} / {seconds(worst(client))}",
            f"{seconds(median(verdict))} / {seconds(worst(verdict))}",
            f"{summary.client_errors} of {summary.requests}",
            f"{summary.retried} ({metric})",
            str(summary.post_detection_hits),
            seconds(median([k.recovery_client for k in kills]), "not in run")]


KILL_HEAD = ("scenario", "replica", "hits", "detect client (s)", "detect verdict (s)",
             "post-detect hits", "start-up (s)", "recovery client (s)", "recovery verdict (s)")


def kill_rows(summary: ScenarioSummary) -> list[list[str]]:
    return [[summary.scenario, str(k.replica), str(k.hits), seconds(k.detection_client),
             seconds(k.detection_verdict), str(k.post_detection_hits), f"{k.startup:.2f}",
             seconds(k.recovery_client, "not in run"), seconds(k.recovery_verdict, "not in run")]
            for k in summary.kills]

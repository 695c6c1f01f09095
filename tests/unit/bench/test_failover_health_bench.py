"""The pure pieces of ``benchmarks/failover_health.py``: schedule parsing and what detection,
hits and recovery come out of made-up answer logs and health polls.

``benchmarks/`` is a folder of scripts, not a package; the module under test imports only the
standard library, so it is loaded from its file without putting the whole folder (``routing``,
``machine``, ...) on ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[3] / "benchmarks" / "failover_health_analysis.py"
_SPEC = importlib.util.spec_from_file_location("failover_health_analysis", _PATH)
assert _SPEC is not None
assert _SPEC.loader is not None
fa = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = fa  # dataclasses look their module up there
_SPEC.loader.exec_module(fa)

DEAD = "127.0.0.1:9001"
ALIVE = "127.0.0.1:9002"


def kill(killed: float = 5.0, restarted: float = 15.0, ready: float = 16.0) -> fa.Kill:
    return fa.Kill(fa.Outage(1, killed, restarted), DEAD, killed, restarted, ready)


def ok(sent: float, endpoint: str = ALIVE, attempts: int = 1) -> fa.Answer:
    return fa.Answer(sent=sent, latency=0.04, status=200, endpoint=endpoint, attempts=attempts)


def retried(sent: float) -> fa.Answer:
    """Its first attempt met the dead replica; the connect retry went to another."""
    return ok(sent, ALIVE, attempts=2)


def polls(endpoint: str, *states: tuple[float, bool]) -> list[fa.HealthSample]:
    return [fa.HealthSample(at, endpoint, routable, "healthy" if routable else "unhealthy",
                            False) for at, routable in states]


# --- schedule -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("1:5-15,2:20-30", (fa.Outage(1, 5, 15), fa.Outage(2, 20, 30))),
    (" 2 : 20 - 30 , 1:5-15 ", (fa.Outage(1, 5, 15), fa.Outage(2, 20, 30))),  # sorted
    ("0:0.5-1.25", (fa.Outage(0, 0.5, 1.25),)),
    ("3:10-35", (fa.Outage(3, 10, 35),)),  # a restore at the very end is allowed
    ("1:2-5,1:5-9", (fa.Outage(1, 2, 5), fa.Outage(1, 5, 9))),  # back to back
])
def test_schedule_parses(text: str, expected: tuple[fa.Outage, ...]) -> None:
    assert fa.parse_schedule(text, replicas=4, duration_s=35) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("1:5", "REPLICA:KILL-RESTORE"),
    ("one:5-15", "REPLICA:KILL-RESTORE"),
    ("1:5-15,", "REPLICA:KILL-RESTORE"),
    ("4:5-15", "replicas are 0-3"),
    ("1:15-5", "after the kill"),
    ("1:5-5", "after the kill"),
    ("1:5-36", "after the end of the load"),
    ("1:5-15,2:10-20", "overlap"),
])
def test_schedule_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fa.parse_schedule(text, replicas=4, duration_s=35)


# --- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("answers", "expected"), [
    # Hits at 5.1 and 5.6, then the gateway keeps away: detected 0.6 s after the kill.
    ([ok(4.9), retried(5.1), ok(5.2), retried(5.6), ok(6.0), ok(14.9)], 0.6),
    # A request sent before the kill that was retried (in flight when it died) is no hit.
    ([retried(4.99), retried(5.3), ok(6.0)], 0.3),
    # A failed answer naming the dead replica is a hit; one naming another replica is not.
    ([fa.Answer(5.4, 0.001, 502, DEAD, 1, "502"), fa.Answer(7.0, 0.001, 502, ALIVE, 1, "502"),
      ok(8.0)], 0.4),
    # Hits until less than a second before the fresh process answered /health (16.0): it
    # never stopped.
    ([retried(5.1), retried(9.0), retried(15.2)], None),
    # The last hit more than a second before that: it stopped.
    ([retried(5.1), retried(9.0), retried(14.5)], 9.5),
    # Until the fresh process answers /health (16.0) the replica is still down...
    ([retried(5.2), retried(15.5)], None),
    # ... after that, a retried request is not this outage's.
    ([retried(5.2), retried(16.5)], 0.2),
])
def test_detection_client(answers: list[fa.Answer], expected: float | None) -> None:
    found = fa.detection_client(answers, kill())
    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(expected)


def test_detection_client_without_hits_is_nan() -> None:
    assert math.isnan(fa.detection_client([ok(5.5), ok(6.0)], kill()))  # type: ignore[arg-type]


def test_detection_verdict_is_the_first_unroutable_poll_after_the_kill() -> None:
    samples = [*polls(DEAD, (4.95, True), (5.05, True), (5.85, False), (5.9, False)),
               *polls(ALIVE, (5.5, False))]  # another endpoint's verdict is not this kill's
    assert fa.detection_verdict(samples, kill()) == pytest.approx(0.85)
    assert fa.detection_verdict(polls(DEAD, (4.0, False), (6.0, True)), kill()) is None
    assert fa.detection_verdict(polls(DEAD, (16.5, False)), kill()) is None  # back up


def test_post_detection_hits_count_hits_after_the_verdict() -> None:
    answers = [retried(5.1), retried(5.7), retried(5.9), ok(6.0)]
    assert fa.post_detection_hits(answers, kill(), 0.65) == 2
    assert fa.post_detection_hits(answers, kill(), None) == 0
    assert len(fa.hits(answers, kill())) == 3


# --- recovery -----------------------------------------------------------------------------------


def test_recovery_from_ready_to_first_answer_and_routable_poll() -> None:
    answers = [ok(15.9, DEAD), ok(16.3, ALIVE), ok(16.8, DEAD), ok(17.0, DEAD)]
    # 15.9 was answered by the old process: before the fresh one answered /health.
    assert fa.recovery_client(answers, kill(), until=35) == pytest.approx(0.8)
    assert fa.recovery_client(answers, kill(), until=16.5) is None
    samples = polls(DEAD, (15.5, True), (16.05, False), (16.6, True))
    assert fa.recovery_verdict(samples, kill(), until=35) == pytest.approx(0.6)


# --- summaries and the table --------------------------------------------------------------------


@pytest.mark.parametrize(("values", "middle", "largest"), [
    ([0.5, 0.7], 0.6, 0.7),
    ([0.5, None, 0.9], 0.9, None),
    ([None, None], None, None),
    ([0.5, math.nan], 0.5, 0.5),
])
def test_median_and_worst_treat_none_as_never(values: list[float | None],
                                              middle: float | None,
                                              largest: float | None) -> None:
    assert fa.median(values) == (pytest.approx(middle) if middle is not None else None)
    assert fa.worst(values) == (pytest.approx(largest) if largest is not None else None)


def test_median_of_nothing_measured_is_nan() -> None:
    assert math.isnan(fa.median([math.nan]))  # type: ignore[arg-type]
    assert fa.seconds(fa.median([math.nan])) == "no hits"
    assert fa.seconds(None) == "never"


def test_summary_and_row() -> None:
    first = kill(5.0, 15.0, 16.0)
    second = fa.Kill(fa.Outage(2, 20, 30), ALIVE, 20.0, 30.0, 31.0)
    answers = [retried(5.2), ok(6.0), ok(17.0, DEAD),  # kill 1: hit, then recovery at 1.0
               fa.Answer(20.1, 0.01, 502, ALIVE, 1, "502"), ok(21.0, DEAD),  # kill 2: a 502
               ok(31.5, ALIVE)]
    samples = [*polls(DEAD, (5.3, False), (16.2, True)), *polls(ALIVE, (20.4, False),
                                                                (31.1, True))]
    summary = fa.summarize("single monitor", answers, samples, [first, second], end=35.0,
                           retries_metric=1.0)
    assert [k.detection_client for k in summary.kills] == [pytest.approx(0.2),
                                                           pytest.approx(0.1)]
    assert [k.detection_verdict for k in summary.kills] == [pytest.approx(0.3),
                                                            pytest.approx(0.4)]
    assert [k.recovery_client for k in summary.kills] == [pytest.approx(1.0),
                                                          pytest.approx(0.5)]
    assert (summary.client_errors, summary.errors_by_kind, summary.retried) == (1, {"502": 1}, 1)
    assert fa.row(summary) == ["single monitor", "2", "0.15 / 0.20", "0.35 / 0.40",
                               "1 of 6", "1 (1)", "0", "0.75"]


def test_a_slow_start_up_does_not_lend_the_next_outage_its_hits() -> None:
    """Replica 1's fresh process answers /health only at 21 s, after replica 2 died at 20 s:
    from then on an extra attempt may be replica 2's, so it counts for the later kill only."""
    first = fa.Kill(fa.Outage(1, 5, 15), DEAD, 5.0, 15.0, 21.0)
    second = fa.Kill(fa.Outage(2, 20, 30), ALIVE, 20.0, 30.0, 31.0)
    answers = [retried(5.3), retried(20.5), ok(22.0, DEAD), ok(32.0, ALIVE)]
    summary = fa.summarize("passive only", answers, [], [first, second], end=35.0)
    assert [k.hits for k in summary.kills] == [1, 1]
    assert [k.detection_client for k in summary.kills] == [pytest.approx(0.3),
                                                           pytest.approx(0.5)]

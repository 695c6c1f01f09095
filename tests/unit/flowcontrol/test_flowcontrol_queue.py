"""Flow-control queues: priority, fairness, ordering, limits, displacement, expiry (fake clock)."""

from __future__ import annotations

import math
import random

import pytest

from inferlane.flowcontrol import (
    Admission,
    BandConfig,
    BandStats,
    ExpiryReason,
    FlowControlConfig,
    FlowController,
    Outcome,
    QueuedRequest,
    RejectReason,
)
from inferlane.flowcontrol._band import FifoQueue

QUEUED = Admission(Outcome.QUEUED)


def rejected(reason: RejectReason) -> Admission:
    return Admission(Outcome.REJECTED, reason)


def req(name: str, priority: int = 0, flow: str = "", size: int = 1, at: float = 0.0,
        deadline: float | None = None) -> QueuedRequest:
    return QueuedRequest(handle=name, priority=priority, flow_id=flow, size_bytes=size,
                         enqueued_at=at, deadline=deadline)


def names(items: list[QueuedRequest] | tuple[QueuedRequest, ...]) -> list[str]:
    return [str(i.handle) for i in items]


def drain(fc: FlowController, now: float = 0.0) -> list[str]:
    popped = []
    while (item := fc.pop_next(now)) is not None:
        popped.append(str(item.handle))
    return popped


def controller(*bands: BandConfig, **kwargs: object) -> FlowController:
    return FlowController(FlowControlConfig(bands=bands, **kwargs))  # type: ignore[arg-type]


def fill(fc: FlowController, *items: QueuedRequest) -> None:
    for item in items:
        assert fc.enqueue(item, item.enqueued_at) == QUEUED, item.handle


# -- order of dispatch ------------------------------------------------------------------------


def test_strict_priority_then_arrival() -> None:
    fc = FlowController()
    fill(fc, req("a", 0), req("b", -1), req("c", 5), req("d", 0), req("e", -1), req("f", 5))
    assert drain(fc) == ["c", "f", "a", "d", "b", "e"]
    assert len(fc) == 0
    assert fc.pop_next(0.0) is None


def test_round_robin_gives_a_big_flow_exactly_its_turn() -> None:
    fc = FlowController()
    fill(fc, *(req(f"b{i}", flow="big") for i in range(10)), req("x", flow="s1"),
         req("y", flow="s2"))
    assert drain(fc) == ["b0", "x", "y", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9"]


def test_new_flow_joins_at_the_end_of_the_rotation() -> None:
    fc = FlowController()
    fill(fc, *(req(f"b{i}", flow="big") for i in range(4)), req("x", flow="s1"),
         req("y", flow="s2"))
    assert fc.pop_next(0.0) is not None  # b0; rotation is now s1, s2, big
    fill(fc, req("z", flow="s3"))  # joins after big
    fill(fc, req("x2", flow="s1"))  # s1 is already in the rotation: keeps its place
    assert drain(fc) == ["x", "y", "b1", "z", "x2", "b2", "b3"]


def test_a_flow_that_empties_is_dropped_and_rejoins_at_the_end() -> None:
    fc = FlowController()
    fill(fc, req("a1", flow="a"), req("b1", flow="b"), req("b2", flow="b"), req("c1", flow="c"))
    assert names([fc.pop_next(0.0)]) == ["a1"]  # type: ignore[list-item]
    fill(fc, req("a2", flow="a"))  # a emptied and was dropped: now behind b and c
    assert drain(fc) == ["b1", "c1", "a2", "b2"]


def test_fcfs_fairness_is_one_queue_for_the_band() -> None:
    fc = controller(BandConfig(priority=0, fairness="fcfs"))
    fill(fc, req("b0", flow="big"), req("b1", flow="big"), req("x", flow="small"),
         req("b2", flow="big"), req("l", priority=-1, flow="big"), req("l2", priority=-1, flow="x"))
    # band 0 is band-wide FCFS; band -1 keeps the default round-robin
    assert drain(fc) == ["b0", "b1", "x", "b2", "l", "l2"]
    assert fc.flow_lengths(0) == {}


# (name, deadline): a 5, b none, c 3, d 5, e none
ARRIVALS = [("a", 5.0), ("b", None), ("c", 3.0), ("d", 5.0), ("e", None)]


@pytest.mark.parametrize(
    ("fairness", "ordering", "expected"),
    [
        ("round-robin", "fcfs", ["a", "b", "c", "d", "e"]),
        # earliest deadline first, ties by arrival, no deadline last (in arrival order)
        ("round-robin", "edf", ["c", "a", "d", "b", "e"]),
        ("fcfs", "fcfs", ["a", "b", "c", "d", "e"]),
        ("fcfs", "edf", ["c", "a", "d", "b", "e"]),
    ],
)
def test_ordering_inside_a_flow(fairness: str, ordering: str, expected: list[str]) -> None:
    fc = controller(BandConfig(priority=0, fairness=fairness, ordering=ordering))  # type: ignore[arg-type]
    fill(fc, *(req(n, flow="f", deadline=d) for n, d in ARRIVALS))
    assert drain(fc) == expected


def test_edf_with_round_robin_orders_each_flow_separately() -> None:
    fc = controller(BandConfig(priority=0, ordering="edf"))
    fill(fc, req("a9", flow="a", deadline=9.0), req("a1", flow="a", deadline=1.0),
         req("b5", flow="b", deadline=5.0), req("b2", flow="b", deadline=2.0))
    assert drain(fc) == ["a1", "b2", "a9", "b5"]  # flows alternate, EDF inside each


def test_fcfs_fairness_with_edf_orders_the_whole_band() -> None:
    fc = controller(BandConfig(priority=0, fairness="fcfs", ordering="edf"))
    fill(fc, req("a9", flow="a", deadline=9.0), req("a1", flow="a", deadline=1.0),
         req("b5", flow="b", deadline=5.0), req("b2", flow="b", deadline=2.0))
    assert drain(fc) == ["a1", "b2", "b5", "a9"]


# -- band limits, too large -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("band", "sizes", "expected"),
    [
        (BandConfig(0, max_requests=2), [1, 1, 1], [QUEUED, QUEUED, rejected(
            RejectReason.BAND_FULL)]),
        (BandConfig(0, max_bytes=10), [4, 4, 3, 2],
         [QUEUED, QUEUED, rejected(RejectReason.BAND_FULL), QUEUED]),  # 12 > 10; 10 fits
        (BandConfig(0, max_bytes=10), [11], [rejected(RejectReason.TOO_LARGE)]),
        (BandConfig(0, max_bytes=10), [10, 0, 1],
         [QUEUED, QUEUED, rejected(RejectReason.BAND_FULL)]),  # 0 bytes still fit
    ],
)
def test_band_limits_reject(band: BandConfig, sizes: list[int],
                            expected: list[Admission]) -> None:
    fc = controller(band)
    got = [fc.enqueue(req(f"r{i}", size=s), 0.0) for i, s in enumerate(sizes)]
    assert got == expected
    # another band is unaffected (and a band limit never displaces lower bands)
    assert fc.enqueue(req("other", priority=1, size=1), 0.0) == QUEUED


def test_band_limit_never_displaces() -> None:
    fc = controller(BandConfig(1, max_requests=1))
    fill(fc, req("low", priority=0), req("high", priority=1))
    assert fc.enqueue(req("high2", priority=1), 0.0) == rejected(RejectReason.BAND_FULL)
    assert len(fc) == 2


def test_too_large_for_the_global_limit() -> None:
    fc = controller(max_bytes=8)
    assert fc.enqueue(req("big", size=9), 0.0) == rejected(RejectReason.TOO_LARGE)
    assert fc.enqueue(req("fits", size=8), 0.0) == QUEUED


# -- global limits and displacement ----------------------------------------------------------


def test_displacement_newest_first_from_the_longest_flow() -> None:
    fc = controller(max_requests=4)
    fill(fc, req("a1", -1, "a"), req("a2", -1, "a"), req("a3", -1, "a"), req("b1", -1, "b"))
    steps = []
    for name in ["n1", "n2", "n3", "n4"]:
        steps.append(names(fc.enqueue(req(name, 0), 0.0).displaced))
    # a is longest (3, then 2); at 1-1 the flow that reached length 1 first (b) goes first
    assert steps == [["a3"], ["a2"], ["b1"], ["a1"]]
    assert fc.flow_lengths(-1) == {}
    # nothing lower left: rejected, nothing evicted
    assert fc.enqueue(req("n5", 0), 0.0) == rejected(RejectReason.QUEUE_FULL)
    assert len(fc) == 4
    assert drain(fc) == ["n1", "n2", "n3", "n4"]


def test_displacement_starts_at_the_lowest_band_and_never_reaches_its_own() -> None:
    fc = controller(max_requests=4)
    fill(fc, req("m1", -2), req("l1", -1), req("l2", -1), req("m2", -2))
    admission = fc.enqueue(req("x", -1), 0.0)
    assert admission.outcome == Outcome.QUEUED
    assert names(admission.displaced) == ["m2"]  # lowest band, newest first
    assert names(fc.enqueue(req("y", -1), 0.0).displaced) == ["m1"]
    # only its own band (-1) and none below: rejected
    assert fc.enqueue(req("z", -1), 0.0) == rejected(RejectReason.QUEUE_FULL)
    assert names(fc.enqueue(req("h", 3), 0.0).displaced) == ["y"]
    assert [s.priority for s in fc.band_stats()] == [3, -1]


def test_displacement_moves_up_to_the_next_lower_band() -> None:
    fc = controller(max_requests=3)
    fill(fc, req("m1", -2), req("l1", -1), req("l2", -1))
    fc.reconfigure(FlowControlConfig(max_requests=1))  # shrink: the arrival needs 3 slots
    assert names(fc.enqueue(req("h", 0), 0.0).displaced) == ["m1", "l2", "l1"]
    assert len(fc) == 1


def test_displacement_by_bytes_until_it_fits() -> None:
    fc = controller(max_bytes=10)
    fill(fc, req("l1", -1, size=3), req("l2", -1, size=3), req("l3", -1, size=3))
    # needs 4 bytes: l3 frees 3 (not enough), l2 another 3
    admission = fc.enqueue(req("h", 0, size=5), 0.0)
    assert names(admission.displaced) == ["l3", "l2"]
    assert fc.total_bytes == 8


def test_queue_full_when_displacement_cannot_make_room_evicts_nothing() -> None:
    fc = controller(max_bytes=10)
    fill(fc, req("l1", -1, size=2), req("l2", -1, size=2), req("h1", 0, size=5))
    # needs 8 bytes beyond the 1 free; all lower requests hold only 4
    assert fc.enqueue(req("h2", 0, size=8), 0.0) == rejected(RejectReason.QUEUE_FULL)
    assert (len(fc), fc.total_bytes) == (3, 9)
    assert drain(fc) == ["h1", "l1", "l2"]


def test_equal_priority_does_not_displace() -> None:
    fc = controller(max_requests=2)
    fill(fc, req("a"), req("b"))
    assert fc.enqueue(req("c"), 0.0) == rejected(RejectReason.QUEUE_FULL)


# -- expiry ------------------------------------------------------------------------------------


def test_ttl_and_deadline_expiry_with_reasons() -> None:
    fc = controller(queue_ttl=10.0)
    fill(fc, req("a", at=0.0), req("b", at=1.0, deadline=5.0), req("c", at=2.0, deadline=20.0),
         req("d", at=3.0, deadline=13.0))  # d: TTL and deadline both at 13 -> deadline wins
    assert fc.next_expiry() == 5.0
    assert fc.expire(4.9) == []
    assert [(str(i.handle), r) for i, r in fc.expire(5.0)] == [("b", ExpiryReason.DEADLINE)]
    assert fc.next_expiry() == 10.0
    assert [(str(i.handle), r) for i, r in fc.expire(12.5)] == [
        ("a", ExpiryReason.TTL), ("c", ExpiryReason.TTL)]
    assert fc.next_expiry() == 13.0
    assert [(str(i.handle), r) for i, r in fc.expire(13.0)] == [("d", ExpiryReason.DEADLINE)]
    assert fc.next_expiry() is None
    assert len(fc) == 0
    assert fc.band_stats() == []


def test_pop_next_skips_expired_but_leaves_them_for_expire() -> None:
    fc = controller(queue_ttl=10.0)
    fill(fc, req("old", at=0.0), req("late", at=1.0, deadline=4.0), req("ok", at=5.0),
         req("low", priority=-1, at=0.0))
    assert names([fc.pop_next(10.0)]) == ["ok"]  # type: ignore[list-item]
    assert fc.pop_next(10.0) is None  # everything left has expired
    assert len(fc) == 3
    assert not fc.has_waiting_at_or_above(-1)
    assert sorted((str(i.handle), r) for i, r in fc.expire(10.0)) == [
        ("late", ExpiryReason.DEADLINE), ("low", ExpiryReason.TTL), ("old", ExpiryReason.TTL)]
    assert len(fc) == 0


def test_pop_next_skips_an_expired_edf_head() -> None:
    fc = controller(BandConfig(0, ordering="edf"))
    fill(fc, req("later", deadline=9.0), req("soon", deadline=2.0))
    assert names([fc.pop_next(3.0)]) == ["later"]  # type: ignore[list-item]
    assert [(str(i.handle), r) for i, r in fc.expire(3.0)] == [("soon", ExpiryReason.DEADLINE)]


def test_expired_requests_still_count_against_limits_until_expire() -> None:
    fc = controller(BandConfig(0, max_requests=1), queue_ttl=1.0)
    fill(fc, req("a", at=0.0))
    assert fc.pop_next(5.0) is None
    assert fc.enqueue(req("b", at=5.0), 5.0) == rejected(RejectReason.BAND_FULL)
    assert len(fc.expire(5.0)) == 1
    assert fc.enqueue(req("b", at=5.0), 5.0) == QUEUED


def test_displacement_can_take_a_parked_request() -> None:
    fc = controller(max_requests=1, queue_ttl=1.0)
    fill(fc, req("stale", -1, at=0.0))
    assert fc.pop_next(2.0) is None  # parks it
    assert names(fc.enqueue(req("h", 0, at=2.0), 2.0).displaced) == ["stale"]
    assert fc.expire(2.0) == []
    assert drain(fc, 2.0) == ["h"]


# -- remove, reconfigure, stats ----------------------------------------------------------------


@pytest.mark.parametrize("ordering", ["fcfs", "edf"])
def test_remove(ordering: str) -> None:
    fc = controller(BandConfig(0, ordering=ordering))  # type: ignore[arg-type]
    a, b, c = req("a", deadline=3.0), req("b", deadline=1.0), req("c", deadline=2.0)
    fill(fc, a, b, c)
    assert fc.remove(b)
    assert not fc.remove(b)
    assert not fc.remove(req("never"))
    assert (len(fc), fc.total_bytes, fc.next_expiry()) == (2, 2, 2.0)
    assert drain(fc) == (["a", "c"] if ordering == "fcfs" else ["c", "a"])
    assert not fc.remove(a)  # already dispatched
    fc.enqueue(b, 0.0)  # removed requests may be queued again
    assert drain(fc) == ["b"]


def test_remove_last_request_drops_flow_and_band() -> None:
    fc = FlowController()
    item = req("a", priority=2, flow="f")
    fill(fc, item)
    fc.remove(item)
    assert (fc.band_stats(), fc.flow_lengths(2), fc.next_expiry()) == ([], {}, None)


def test_reconfigure_keeps_requests_and_applies_new_limits() -> None:
    fc = FlowController()
    fill(fc, *(req(f"r{i}", flow="f", deadline=10.0 - i) for i in range(4)))
    fc.reconfigure(FlowControlConfig(default_band=BandConfig(0, max_requests=2, ordering="edf"),
                                     queue_ttl=1.0))
    assert len(fc) == 4
    assert fc.enqueue(req("new"), 0.0) == rejected(RejectReason.BAND_FULL)
    assert fc.next_expiry() == 7.0  # admitted under the old 30 s TTL: kept
    assert drain(fc) == ["r3", "r2", "r1", "r0"]  # now EDF
    assert fc.enqueue(req("new", at=0.0), 0.0) == QUEUED
    assert fc.next_expiry() == 1.0


def test_reconfigure_to_fcfs_fairness_merges_flows_by_arrival() -> None:
    fc = FlowController()
    fill(fc, req("a1", flow="a"), req("a2", flow="a"), req("b1", flow="b"))
    fc.reconfigure(FlowControlConfig(bands=(BandConfig(0, fairness="fcfs"),)))
    assert drain(fc) == ["a1", "a2", "b1"]


def test_stats_and_flow_lengths() -> None:
    fc = FlowController()
    fill(fc, req("a", 0, "x", size=10), req("b", 0, "y", size=5), req("c", 0, "x", size=1),
         req("d", 7, "", size=100), req("e", -3, "z", size=2))
    assert fc.band_stats() == [BandStats(7, 1, 100, 1), BandStats(0, 3, 16, 2),
                               BandStats(-3, 1, 2, 1)]
    assert fc.flow_lengths(0) == {"x": 2, "y": 1}
    assert fc.flow_lengths(1) == {}
    assert (len(fc), fc.total_bytes) == (5, 118)
    assert drain(fc) == ["d", "a", "b", "c", "e"]
    assert (fc.band_stats(), fc.total_bytes) == ([], 0)


@pytest.mark.parametrize(
    ("priority", "expected"), [(-5, True), (-3, True), (0, True), (1, True), (2, False)])
def test_has_waiting_at_or_above(priority: int, expected: bool) -> None:
    fc = FlowController()
    fill(fc, req("a", -3), req("b", 1))
    assert fc.has_waiting_at_or_above(priority) is expected


# -- configuration and misuse -------------------------------------------------------------------


def test_band_for() -> None:
    listed = BandConfig(5, max_requests=3)
    config = FlowControlConfig(bands=(listed,), default_band=BandConfig(99, max_bytes=7))
    assert config.band_for(5) is listed
    assert config.band_for(-1) == BandConfig(-1, max_bytes=7)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: FlowControlConfig(bands=(BandConfig(1), BandConfig(1))), "listed twice"),
        (lambda: FlowControlConfig(max_requests=0), "max_requests"),
        (lambda: FlowControlConfig(max_bytes=0), "max_bytes"),
        (lambda: FlowControlConfig(queue_ttl=0.0), "queue_ttl"),
        (lambda: FlowControlConfig(queue_ttl=math.inf), "queue_ttl"),
        (lambda: FlowControlConfig(queue_ttl=math.nan), "queue_ttl"),
        (lambda: BandConfig(0, max_requests=0), "max_requests"),
        (lambda: BandConfig(0, max_bytes=0), "max_bytes"),
        (lambda: BandConfig(0, fairness="lottery"), "fairness"),  # type: ignore[arg-type]
        (lambda: BandConfig(0, ordering="lifo"), "ordering"),  # type: ignore[arg-type]
    ],
)
def test_config_validation(build: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()  # type: ignore[operator]


def test_enqueue_misuse() -> None:
    fc = FlowController()
    item = req("a")
    fill(fc, item)
    with pytest.raises(ValueError, match="already queued"):
        fc.enqueue(item, 0.0)
    with pytest.raises(ValueError, match="size_bytes"):
        fc.enqueue(req("neg", size=-1), 0.0)


# -- scale and bounded memory -------------------------------------------------------------------


def test_ten_thousand_requests() -> None:
    fc = controller(default_band=BandConfig(0, max_requests=20_000), max_requests=20_000)
    items = [req(f"r{i}", i % 3 - 1, f"f{i % 97}", size=i % 5, at=i * 1e-3) for i in range(10_000)]
    fill(fc, *items)
    assert len(fc) == 10_000
    for item in items[::7]:
        assert fc.remove(item)
    popped = drain(fc, 0.0)
    assert len(popped) == 10_000 - len(items[::7])
    assert popped[0] == "r2"  # priority 1 first
    assert (len(fc), fc.total_bytes) == (0, 0)


def test_churn_in_a_starved_band_keeps_memory_bounded() -> None:
    fc = FlowController()
    fill(fc, req("head", -1, "f"))
    for i in range(3000):
        item = req(f"x{i}", -1, "f" if i % 2 else f"g{i}")
        fill(fc, item)
        assert fc.remove(item)
    band = fc._bands[-1]
    assert len(fc) == 1
    assert len(fc._expiry) <= 2 * len(fc) + 64
    assert len(band.rotation) <= 2 * len(band.queues) + 8
    assert all(len(f.arrivals) <= 2 * f.count + 8 for f in band.flows.values())
    assert drain(fc) == ["head"]



@pytest.mark.parametrize("ordering", ["fcfs", "edf"])
def test_removals_from_the_middle_keep_memory_bounded(ordering: str) -> None:
    fc = controller(default_band=BandConfig(0, ordering=ordering))  # type: ignore[arg-type]
    fill(fc, req("head", flow="f", deadline=1.0))
    previous = req("x", flow="f", deadline=2.0)
    fill(fc, previous)
    for i in range(1000):
        newest = req(f"x{i}", flow="f", deadline=2.0)
        fill(fc, newest)
        assert fc.remove(previous)  # never at an end of the flow
        previous = newest
    band = fc._bands[0]
    flow = band.flows["f"]
    assert (flow.count, len(fc)) == (2, 2)
    assert len(flow.arrivals) <= 2 * flow.count + 8
    queue = band.queues["f"]
    stored = queue._entries if isinstance(queue, FifoQueue) else queue._heap
    assert len(stored) <= 2 * 2 + 8
    assert drain(fc) == ["head", "x999"]


# -- randomised invariants ----------------------------------------------------------------------


def expires_at(item: QueuedRequest, ttl: float) -> float:
    return min(item.enqueued_at + ttl, math.inf if item.deadline is None else item.deadline)


def check_invariants(fc: FlowController, model: dict[QueuedRequest, int],
                     config: FlowControlConfig) -> None:
    stats = fc.band_stats()
    assert len(fc) == len(model) == sum(s.requests for s in stats)
    assert fc.total_bytes == sum(i.size_bytes for i in model) == sum(s.bytes for s in stats)
    assert [s.priority for s in stats] == sorted({i.priority for i in model}, reverse=True)
    assert len(fc) <= config.max_requests
    assert fc.total_bytes <= config.max_bytes
    for s in stats:
        band = config.band_for(s.priority)
        assert 0 < s.requests <= band.max_requests
        assert s.bytes <= band.max_bytes
        lengths = fc.flow_lengths(s.priority)
        assert all(n > 0 for n in lengths.values())
        assert sum(lengths.values()) == s.requests == sum(
            1 for i in model if i.priority == s.priority)
        assert len(lengths) == s.flows
    expected_next = min((expires_at(i, config.queue_ttl) for i in model), default=None)
    assert fc.next_expiry() == expected_next


def expected_admission(item: QueuedRequest, model: dict[QueuedRequest, int],
                       config: FlowControlConfig) -> RejectReason | None:
    band = config.band_for(item.priority)
    if item.size_bytes > band.max_bytes or item.size_bytes > config.max_bytes:
        return RejectReason.TOO_LARGE
    same = [i for i in model if i.priority == item.priority]
    if (len(same) >= band.max_requests
            or sum(i.size_bytes for i in same) + item.size_bytes > band.max_bytes):
        return RejectReason.BAND_FULL
    lower = [i for i in model if i.priority < item.priority]
    if (len(model) - len(lower) + 1 > config.max_requests
            or sum(i.size_bytes for i in model) - sum(i.size_bytes for i in lower)
            + item.size_bytes > config.max_bytes):
        return RejectReason.QUEUE_FULL
    return None


def check_pop(popped: QueuedRequest | None, model: dict[QueuedRequest, int], now: float,
              config: FlowControlConfig) -> None:
    live = [i for i in model if expires_at(i, config.queue_ttl) > now]
    if popped is None:
        assert live == []
        return
    assert popped in live
    assert popped.priority == max(i.priority for i in live)
    band = config.band_for(popped.priority)
    peers = [i for i in live if i.priority == popped.priority
             and (band.fairness == "fcfs" or i.flow_id == popped.flow_id)]

    def key(i: QueuedRequest) -> tuple[float, int]:
        edf = (math.inf if i.deadline is None else i.deadline) if band.ordering == "edf" else 0.0
        return (edf, model[i])

    assert min(peers, key=key) is popped


@pytest.mark.parametrize("seed", range(6))
def test_random_operations_keep_invariants(seed: int) -> None:
    rng = random.Random(seed)
    # two configurations with the same limits and swapped policies, switched now and then
    configs = [
        FlowControlConfig(
            bands=(BandConfig(1, max_requests=6, max_bytes=40, ordering="edf"),
                   BandConfig(-1, max_requests=12, max_bytes=60, fairness="fcfs")),
            default_band=BandConfig(0, max_requests=8, max_bytes=50),
            max_requests=16, max_bytes=90, queue_ttl=5.0),
        FlowControlConfig(
            bands=(BandConfig(1, max_requests=6, max_bytes=40, fairness="fcfs"),
                   BandConfig(-1, max_requests=12, max_bytes=60, ordering="edf")),
            default_band=BandConfig(0, max_requests=8, max_bytes=50, ordering="edf"),
            max_requests=16, max_bytes=90, queue_ttl=5.0),
    ]
    config = configs[0]
    fc = FlowController(config)
    seen: set[str] = set()
    model: dict[QueuedRequest, int] = {}  # queued request -> arrival sequence
    seq = 0
    now = 0.0
    for step in range(600):
        now += rng.choice([0.0, 0.0, 0.1, 0.5])
        op = rng.random()
        if op < 0.5:
            deadline = rng.choice([None, None, now + rng.uniform(0.0, 8.0)])
            item = req(f"s{step}", rng.choice([-2, -1, 0, 1]), rng.choice("abc"),
                       rng.randint(0, 12), now, deadline)
            reason = expected_admission(item, model, config)
            admission = fc.enqueue(item, now)
            assert admission.reason == reason
            assert admission.outcome == (Outcome.QUEUED if reason is None else Outcome.REJECTED)
            for victim in admission.displaced:
                seen.add("displaced")
                assert victim.priority < item.priority
                del model[victim]
            if reason is None:
                model[item] = seq
                seq += 1
        elif op < 0.8:
            popped = fc.pop_next(now)
            check_pop(popped, model, now, config)
            if any(expires_at(i, config.queue_ttl) <= now for i in model):
                seen.add("skipped expired")
            if popped is not None:
                del model[popped]
        elif op < 0.9:
            expired = fc.expire(now)
            due = {i for i in model if expires_at(i, config.queue_ttl) <= now}
            assert {i for i, _ in expired} == due
            for item, why in expired:
                assert why == (ExpiryReason.DEADLINE if item.deadline is not None
                                  and now >= item.deadline else ExpiryReason.TTL)
                del model[item]
        elif op < 0.97 and model:
            victim = rng.choice(list(model))
            assert fc.remove(victim)
            del model[victim]
        else:
            config = configs[1] if config is configs[0] else configs[0]
            fc.reconfigure(config)
            seen.add("reconfigured")
        check_invariants(fc, model, config)
    assert seen == {"displaced", "skipped expired", "reconfigured"}

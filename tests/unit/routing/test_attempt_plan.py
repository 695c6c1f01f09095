"""AttemptPlan: the chain, what is skipped before any attempt, the step after each failure, the
retry budget and the cooldown bookkeeping. A fake clock (floats), a real RetryBudget and real
Cooldowns."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from inferlane.routing import backends
from inferlane.routing.attempts import (
    DEFAULT_HOLD,
    AttemptPlan,
    Skip,
    Step,
    StepKind,
    fits_context,
)
from inferlane.routing.backends import (
    BackendKind,
    BackendRef,
    pool_ref,
    provider_ref,
    sticky_unit,
)
from inferlane.routing.cooldown import BreakerState, CooldownConfig, Cooldowns, Transition
from inferlane.routing.failures import FailureClass
from inferlane.routing.resilience import ALL_FALLBACK_TRIGGERS, FailurePolicy, RetryRules
from inferlane.routing.retry_budget import RetryBudget
from inferlane.routing.split import WeightedChoice

CONNECT, TIMEOUT, FIVE, RATE = (FailureClass.CONNECT, FailureClass.TIMEOUT,
                                FailureClass.SERVER_ERROR, FailureClass.RATE_LIMITED)
CONTEXT, CLIENT, OK = (FailureClass.CONTEXT_WINDOW, FailureClass.CLIENT_ERROR, FailureClass.OK)
RETRY, FALLBACK, GIVE_UP = StepKind.RETRY, StepKind.FALLBACK, StepKind.GIVE_UP

POOL = pool_ref("default/pool")
POOL_B = pool_ref("default/pool-b")
OAI = provider_ref("default/oai")
CLAUDE = provider_ref("default/claude")


def roomy_budget() -> RetryBudget:
    """A budget that never says no (its own tests are elsewhere)."""
    return RetryBudget(percent=100.0, min_retries=1000)


def make_plan(chain: Sequence[BackendRef], policy: FailurePolicy | None = None, *,
              budget: RetryBudget | None = None, cooldowns: Cooldowns | None = None,
              fits: dict[BackendRef, int | None] | None = None,
              prompt: int = 0, max_tokens: int | None = None) -> AttemptPlan:
    return AttemptPlan(chain, policy or FailurePolicy(), budget=budget or roomy_budget(),
                       cooldowns=cooldowns,
                       fits=fits_context(prompt, max_tokens, fits or {}))


def open_breaker(cooldowns: Cooldowns, key: str, now: float = 0.0) -> None:
    for _ in range(cooldowns.config.consecutive_failures):
        cooldowns.record(key, now, ok=False)
    assert cooldowns.state(key, now) is BreakerState.OPEN


# -- the chain and the first backend ------------------------------------------------------------

def test_chain_drops_duplicates_keeping_the_first_position() -> None:
    plan = make_plan([OAI, POOL, OAI, CLAUDE, POOL, CLAUDE])
    assert plan.chain == (OAI, POOL, CLAUDE)
    assert plan.current is None
    assert plan.attempts == 0


@pytest.mark.parametrize(
    ("prompt", "max_tokens", "windows", "fits"),
    [
        (1000, None, {OAI: 1000}, True),
        (1000, 0, {OAI: 1000}, True),
        (1000, 1, {OAI: 1000}, False),  # max_tokens counts
        (999, 1, {OAI: 1000}, True),
        (5000, 4096, {OAI: 8192}, False),
        (5000, 4096, {OAI: None}, True),  # unknown window: assumed to fit
        (5000, 4096, {}, True),  # not listed: unknown
        (10**9, None, {CLAUDE: 10}, True),  # another backend's window does not matter
    ],
)
def test_fits_context(prompt: int, max_tokens: int | None,
                      windows: dict[BackendRef, int | None], fits: bool) -> None:
    assert fits_context(prompt, max_tokens, windows)(OAI) is fits


def test_first_returns_the_first_backend_and_counts_the_request() -> None:
    budget = roomy_budget()
    plan = make_plan([OAI, CLAUDE], budget=budget)
    assert plan.first(5.0) == OAI
    assert plan.current == OAI
    assert plan.attempts == 1
    assert plan.skipped == []
    assert budget.requests(5.0) == 1
    assert budget.retries(5.0) == 0


@pytest.mark.parametrize(
    ("windows", "open_keys", "first", "skipped"),
    [
        pytest.param({OAI: 100}, [], CLAUDE, [Skip(OAI, "context-window-exceeded")],
                     id="context-window-too-small"),
        pytest.param({OAI: 100, CLAUDE: 50}, [], POOL,
                     [Skip(OAI, "context-window-exceeded"),
                      Skip(CLAUDE, "context-window-exceeded")], id="two-too-small"),
        pytest.param({OAI: 2000, CLAUDE: None}, [OAI.label], CLAUDE, [Skip(OAI, "cooldown")],
                     id="provider-in-cooldown"),
        pytest.param({}, [OAI.label, CLAUDE.label], POOL,
                     [Skip(OAI, "cooldown"), Skip(CLAUDE, "cooldown")], id="both-cooling"),
        pytest.param({OAI: 100}, [CLAUDE.label], POOL,
                     [Skip(OAI, "context-window-exceeded"), Skip(CLAUDE, "cooldown")],
                     id="one-of-each"),
        pytest.param({}, ["default/oai"], OAI, [], id="cooldown-is-keyed-by-label"),
    ],
)
def test_first_skips(windows: dict[BackendRef, int | None], open_keys: list[str],
                     first: BackendRef, skipped: list[Skip]) -> None:
    cooldowns = Cooldowns()
    for key in open_keys:
        open_breaker(cooldowns, key)
    plan = make_plan([OAI, CLAUDE, POOL], cooldowns=cooldowns, fits=windows, prompt=500,
                     max_tokens=100)
    assert plan.first(1.0) == first
    assert plan.skipped == skipped
    assert plan.attempts == 1


def test_a_pool_is_never_skipped_for_cooldown() -> None:
    # Pool endpoints have their own breakers (the picker filters them); the plan only cools
    # providers.
    cooldowns = Cooldowns()
    open_breaker(cooldowns, POOL.label)
    plan = make_plan([POOL], cooldowns=cooldowns)
    assert plan.first(1.0) == POOL


def test_every_backend_skipped_gives_none_and_force_tries_one_anyway() -> None:
    cooldowns = Cooldowns()
    open_breaker(cooldowns, OAI.label)
    plan = make_plan([OAI, POOL], cooldowns=cooldowns, fits={POOL: 10}, prompt=50)
    assert plan.first(1.0) is None
    assert plan.current is None
    assert plan.attempts == 0
    assert plan.skipped == [Skip(OAI, "cooldown"), Skip(POOL, "context-window-exceeded")]
    plan.force(OAI)
    assert plan.current == OAI
    assert plan.attempts == 1
    # Nothing is left after a forced attempt.
    step = plan.failed(FIVE, status=500, breaker_key=OAI.label, now=2.0)
    assert step == Step(GIVE_UP, reason="no fallback left")


def test_force_keeps_a_higher_attempt_count() -> None:
    plan = make_plan([OAI, CLAUDE])
    plan.first(0.0)
    plan.failed(FIVE, status=500, breaker_key=OAI.label, now=0.0)
    assert plan.attempts == 2
    plan.force(OAI)
    assert (plan.current, plan.attempts) == (OAI, 2)


# -- one failure: the next step -----------------------------------------------------------------

CASES = [
    # (id, chain, retry rules, fallback_on, failure, status, retry_after, unit, step)
    ("4xx-gives-up", [OAI, CLAUDE], RetryRules(attempts=3), ALL_FALLBACK_TRIGGERS,
     CLIENT, 400, None, 0.0, Step(GIVE_UP, reason="4xx is not retried")),
    ("ok-gives-up", [OAI, CLAUDE], RetryRules(attempts=3), ALL_FALLBACK_TRIGGERS,
     OK, 200, None, 0.0, Step(GIVE_UP, reason="ok is not retried")),
    ("connect-pool-same-pool-at-once", [POOL, OAI], RetryRules(), ALL_FALLBACK_TRIGGERS,
     CONNECT, 0, None, 0.9, Step(RETRY, POOL, 0.0, "connect-failure")),
    ("connect-pool-no-connect-retries", [POOL, OAI], RetryRules(connect_retries=0),
     ALL_FALLBACK_TRIGGERS, CONNECT, 0, None, 0.9, Step(FALLBACK, OAI, 0.0, "connect-failure")),
    ("connect-pool-attempts-raise-connect-retries", [POOL, OAI],
     RetryRules(attempts=2, connect_retries=0), ALL_FALLBACK_TRIGGERS, CONNECT, 0, None, 0.9,
     Step(RETRY, POOL, 0.0, "connect-failure")),
    ("connect-provider-is-not-a-pool", [OAI, CLAUDE], RetryRules(), ALL_FALLBACK_TRIGGERS,
     CONNECT, 0, None, 0.5, Step(FALLBACK, CLAUDE, 0.0, "connect-failure")),
    ("connect-provider-with-attempts-backs-off", [OAI, CLAUDE], RetryRules(attempts=1),
     ALL_FALLBACK_TRIGGERS, CONNECT, 0, None, 0.5, Step(RETRY, OAI, 0.05, "connect-failure")),
    ("timeout-no-attempts-falls-back", [OAI, CLAUDE], RetryRules(), ALL_FALLBACK_TRIGGERS,
     TIMEOUT, 504, None, 0.5, Step(FALLBACK, CLAUDE, 0.0, "timeout")),
    ("timeout-retries-with-jitter", [OAI, CLAUDE], RetryRules(attempts=1),
     ALL_FALLBACK_TRIGGERS, TIMEOUT, 0, None, 0.5, Step(RETRY, OAI, 0.05, "timeout")),
    ("timeout-on-a-pool-backs-off", [POOL, OAI], RetryRules(attempts=1, backoff_base=1.0),
     ALL_FALLBACK_TRIGGERS, TIMEOUT, 0, None, 0.25, Step(RETRY, POOL, 0.25, "timeout")),
    ("5xx-retries", [OAI], RetryRules(attempts=1, backoff_base=0.2), ALL_FALLBACK_TRIGGERS,
     FIVE, 503, None, 0.5, Step(RETRY, OAI, 0.1, "5xx")),
    ("5xx-backoff-capped", [OAI], RetryRules(attempts=1, backoff_base=4.0, backoff_max=2.0),
     ALL_FALLBACK_TRIGGERS, FIVE, 500, None, 0.5, Step(RETRY, OAI, 1.0, "5xx")),
    ("429-retry-after-is-a-minimum", [OAI, CLAUDE], RetryRules(attempts=1),
     ALL_FALLBACK_TRIGGERS, RATE, 429, 0.5, 0.0, Step(RETRY, OAI, 0.5, "429")),
    ("429-backoff-longer-than-retry-after", [OAI, CLAUDE],
     RetryRules(attempts=1, backoff_base=1.0), ALL_FALLBACK_TRIGGERS, RATE, 429, 0.25, 0.5,
     Step(RETRY, OAI, 0.5, "429")),
    ("429-retry-after-at-the-max-is-waited", [OAI, CLAUDE],
     RetryRules(attempts=1, retry_after_max=1.0), ALL_FALLBACK_TRIGGERS, RATE, 429, 1.0, 0.0,
     Step(RETRY, OAI, 1.0, "429")),
    ("429-retry-after-over-the-max-falls-back", [OAI, CLAUDE],
     RetryRules(attempts=3, retry_after_max=1.0), ALL_FALLBACK_TRIGGERS, RATE, 429, 1.5, 0.0,
     Step(FALLBACK, CLAUDE, 0.0, "429")),
    ("429-retry-after-over-the-max-no-fallback", [OAI],
     RetryRules(attempts=3, retry_after_max=1.0), ALL_FALLBACK_TRIGGERS, RATE, 429, 30.0, 0.0,
     Step(GIVE_UP, reason="no fallback left")),
    # Without Retry-After the plan waits DEFAULT_HOLD (1 s), the time its breaker holds it.
    ("429-without-retry-after", [OAI], RetryRules(attempts=1), ALL_FALLBACK_TRIGGERS,
     RATE, 429, None, 0.5, Step(RETRY, OAI, 1.0, "429")),
    ("codes-match", [OAI, CLAUDE], RetryRules(attempts=1, codes=frozenset({503})),
     ALL_FALLBACK_TRIGGERS, FIVE, 503, None, 0.0, Step(RETRY, OAI, 0.0, "5xx")),
    ("codes-do-not-match-5xx", [OAI, CLAUDE], RetryRules(attempts=1, codes=frozenset({503})),
     ALL_FALLBACK_TRIGGERS, FIVE, 500, None, 0.0, Step(FALLBACK, CLAUDE, 0.0, "5xx")),
    ("codes-do-not-match-429", [OAI, CLAUDE], RetryRules(attempts=1, codes=frozenset({503})),
     ALL_FALLBACK_TRIGGERS, RATE, 429, 0.1, 0.0, Step(FALLBACK, CLAUDE, 0.0, "429")),
    ("codes-do-not-match-504", [OAI, CLAUDE], RetryRules(attempts=1, codes=frozenset({503})),
     ALL_FALLBACK_TRIGGERS, TIMEOUT, 504, None, 0.0, Step(FALLBACK, CLAUDE, 0.0, "timeout")),
    ("codes-ignore-a-timeout-without-status", [OAI, CLAUDE],
     RetryRules(attempts=1, codes=frozenset({503})), ALL_FALLBACK_TRIGGERS, TIMEOUT, 0, None,
     0.0, Step(RETRY, OAI, 0.0, "timeout")),
    ("context-window-never-same-backend", [OAI, CLAUDE], RetryRules(attempts=5),
     ALL_FALLBACK_TRIGGERS, CONTEXT, 400, None, 0.0,
     Step(FALLBACK, CLAUDE, 0.0, "context-window-exceeded")),
    ("context-window-never-same-pool", [POOL, OAI], RetryRules(attempts=5, connect_retries=5),
     ALL_FALLBACK_TRIGGERS, CONTEXT, 400, None, 0.0,
     Step(FALLBACK, OAI, 0.0, "context-window-exceeded")),
    ("context-window-not-a-trigger", [OAI, CLAUDE], RetryRules(attempts=5),
     ALL_FALLBACK_TRIGGERS - {CONTEXT}, CONTEXT, 400, None, 0.0,
     Step(GIVE_UP, reason="context-window-exceeded does not trigger a fallback")),
    ("5xx-not-a-trigger", [OAI, CLAUDE], RetryRules(), frozenset({TIMEOUT}), FIVE, 502, None,
     0.0, Step(GIVE_UP, reason="5xx does not trigger a fallback")),
    ("connect-pool-out-of-retries-not-a-trigger", [POOL, OAI], RetryRules(connect_retries=0),
     frozenset({FIVE}), CONNECT, 0, None, 0.0,
     Step(GIVE_UP, reason="connect-failure does not trigger a fallback")),
    ("no-fallback-left", [OAI], RetryRules(), ALL_FALLBACK_TRIGGERS, FIVE, 500, None, 0.0,
     Step(GIVE_UP, reason="no fallback left")),
    ("fallback-to-a-pool", [OAI, POOL], RetryRules(), ALL_FALLBACK_TRIGGERS, TIMEOUT, 0, None,
     0.0, Step(FALLBACK, POOL, 0.0, "timeout")),
]


@pytest.mark.parametrize(
    ("chain", "retry", "fallback_on", "failure", "status", "retry_after", "unit", "step"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_step_after_one_failure(chain: list[BackendRef], retry: RetryRules,
                                fallback_on: frozenset[FailureClass], failure: FailureClass,
                                status: int, retry_after: float | None, unit: float,
                                step: Step) -> None:
    plan = make_plan(chain, FailurePolicy(retry=retry, fallback_on=fallback_on))
    first = plan.first(0.0)
    assert first == chain[0]
    got = plan.failed(failure, status=status, breaker_key=first.label, now=0.0,
                      retry_after=retry_after, unit=unit)
    assert got.kind is step.kind
    assert got.backend == step.backend
    assert got.delay == pytest.approx(step.delay)
    assert got.reason == step.reason
    assert plan.attempts == (1 if step.kind is GIVE_UP else 2)
    if step.backend is not None:
        assert plan.current == step.backend


def test_a_5xx_retry_after_is_not_waited_out_beyond_retry_after_max() -> None:
    retry = RetryRules(attempts=1, retry_after_max=1.0, backoff_max=2.0)
    plan = make_plan([OAI, CLAUDE], FailurePolicy(retry=retry))
    plan.first(0.0)
    step = plan.failed(FIVE, status=503, breaker_key=OAI.label, now=0.0, retry_after=3600.0)
    assert not (step.kind is RETRY and step.delay > max(retry.backoff_max,
                                                        retry.retry_after_max))


# -- several failures ---------------------------------------------------------------------------

def test_same_backend_retries_then_fallback_then_its_own_retries() -> None:
    retry = RetryRules(attempts=3, backoff_base=0.1, backoff_max=0.3)
    plan = make_plan([OAI, CLAUDE], FailurePolicy(retry=retry))
    plan.first(0.0)
    steps = [plan.failed(FIVE, status=500, breaker_key=OAI.label, now=float(i), unit=0.5)
             for i in range(4)]
    # Full jitter: unit * min(cap, base * 2**retry) for retries 0, 1, 2.
    assert [(s.kind, s.backend) for s in steps] == [(RETRY, OAI)] * 3 + [(FALLBACK, CLAUDE)]
    assert [s.delay for s in steps] == pytest.approx([0.05, 0.1, 0.15, 0.0])  # 0.2 capped
    assert plan.attempts == 5
    # The fallback starts its own retry count.
    step = plan.failed(TIMEOUT, status=0, breaker_key=CLAUDE.label, now=5.0, unit=0.5)
    assert (step.kind, step.backend, step.delay) == (RETRY, CLAUDE, pytest.approx(0.05))
    assert plan.attempts == 6


@pytest.mark.parametrize(
    ("attempts", "connect_retries", "retries"),
    [(0, 1, 1), (0, 3, 3), (2, 1, 2), (4, 2, 4), (0, 0, 0)],
)
def test_connect_failures_on_a_pool_retry_up_to_the_larger_limit(
        attempts: int, connect_retries: int, retries: int) -> None:
    plan = make_plan([POOL, POOL_B], FailurePolicy(
        retry=RetryRules(attempts=attempts, connect_retries=connect_retries)))
    plan.first(0.0)
    steps = [plan.failed(CONNECT, status=0, breaker_key="default/pool@10.0.0.1:8000", now=0.0,
                         unit=0.99) for _ in range(retries + 1)]
    assert steps[:retries] == [Step(RETRY, POOL, 0.0, "connect-failure")] * retries
    assert steps[retries] == Step(FALLBACK, POOL_B, 0.0, "connect-failure")
    assert plan.attempts == retries + 2


def test_retries_of_one_failure_class_count_against_another() -> None:
    # One retry count per backend: a connect retry uses up the rule's single retry.
    plan = make_plan([POOL, OAI], FailurePolicy(retry=RetryRules(attempts=1)))
    plan.first(0.0)
    assert plan.failed(CONNECT, status=0, breaker_key="k", now=0.0).kind is RETRY
    step = plan.failed(TIMEOUT, status=0, breaker_key="k", now=0.0)
    assert step == Step(FALLBACK, OAI, 0.0, "timeout")


def test_fallback_skips_a_provider_in_cooldown_and_one_that_does_not_fit() -> None:
    cooldowns = Cooldowns()
    open_breaker(cooldowns, CLAUDE.label)
    plan = make_plan([OAI, CLAUDE, POOL_B, POOL], cooldowns=cooldowns, fits={POOL_B: 10},
                     prompt=100)
    assert plan.first(1.0) == OAI
    step = plan.failed(FIVE, status=502, breaker_key=OAI.label, now=1.0)
    assert step == Step(FALLBACK, POOL, 0.0, "5xx")
    assert plan.skipped == [Skip(CLAUDE, "cooldown"), Skip(POOL_B, "context-window-exceeded")]


def test_every_fallback_skipped_gives_up_and_lists_them() -> None:
    cooldowns = Cooldowns()
    open_breaker(cooldowns, CLAUDE.label)
    plan = make_plan([OAI, CLAUDE, POOL], cooldowns=cooldowns, fits={POOL: 10}, prompt=100)
    plan.first(1.0)
    step = plan.failed(TIMEOUT, status=0, breaker_key=OAI.label, now=1.0)
    assert step == Step(GIVE_UP, reason="every fallback is skipped")
    assert plan.skipped == [Skip(CLAUDE, "cooldown"), Skip(POOL, "context-window-exceeded")]
    assert plan.attempts == 1


# -- the retry budget ---------------------------------------------------------------------------

def test_retry_budget_exhausted_stops_same_backend_retries() -> None:
    budget = RetryBudget(percent=0.0, min_retries=1)
    plan = make_plan([OAI, CLAUDE], FailurePolicy(retry=RetryRules(attempts=5)), budget=budget)
    plan.first(0.0)
    assert plan.failed(FIVE, status=500, breaker_key=OAI.label, now=0.0).kind is RETRY
    step = plan.failed(FIVE, status=500, breaker_key=OAI.label, now=0.0)
    assert step == Step(GIVE_UP, reason="retry budget exhausted")
    assert plan.attempts == 2
    assert budget.retries(0.0) == 1


def test_retry_budget_exhausted_stops_fallbacks() -> None:
    budget = RetryBudget(percent=0.0, min_retries=0)
    plan = make_plan([OAI, CLAUDE], budget=budget)
    plan.first(0.0)
    step = plan.failed(TIMEOUT, status=0, breaker_key=OAI.label, now=0.0)
    assert step == Step(GIVE_UP, reason="retry budget exhausted")
    assert plan.attempts == 1


def test_connect_retries_on_a_pool_are_outside_the_budget() -> None:
    # Another endpoint after a refused connection adds no load; falling back to a provider does.
    budget = RetryBudget(percent=0.0, min_retries=0)
    plan = make_plan([POOL, OAI], budget=budget)
    plan.first(0.0)
    step = plan.failed(CONNECT, status=0, breaker_key="k", now=0.0)
    assert step == Step(RETRY, POOL, 0.0, "connect-failure")
    assert budget.retries(0.0) == 0
    step = plan.failed(CONNECT, status=0, breaker_key="k", now=0.0)
    assert step == Step(GIVE_UP, reason="retry budget exhausted")


def test_the_budget_is_shared_by_the_plans_of_one_rule() -> None:
    # 10 requests at 20 % allow max(3, 2) extra attempts over the window.
    budget = RetryBudget(percent=20.0, min_retries=3)
    plans = [make_plan([OAI, CLAUDE], budget=budget) for _ in range(10)]
    for plan in plans:
        plan.first(0.0)
    kinds = [p.failed(FIVE, status=500, breaker_key=OAI.label, now=0.5).kind for p in plans]
    assert kinds == [FALLBACK] * 3 + [GIVE_UP] * 7


# -- cooldown bookkeeping -----------------------------------------------------------------------

@pytest.mark.parametrize(("failure", "status"), [(CONNECT, 0), (TIMEOUT, 0), (TIMEOUT, 504),
                                                 (FIVE, 500), (FIVE, 529)])
def test_breaker_failures_open_the_provider_and_a_later_plan_skips_it(
        failure: FailureClass, status: int) -> None:
    cooldowns = Cooldowns()
    for i in range(5):
        plan = make_plan([OAI, CLAUDE], cooldowns=cooldowns)
        assert plan.first(float(i)) == OAI
        step = plan.failed(failure, status=status, breaker_key=OAI.label, now=float(i))
        assert step.kind is FALLBACK
        expected = ([Transition(OAI.label, BreakerState.OPEN, "5 consecutive failures")]
                    if i == 4 else [])
        assert plan.transitions == expected
    later = make_plan([OAI, CLAUDE], cooldowns=cooldowns)
    assert later.first(10.0) == CLAUDE
    assert later.skipped == [Skip(OAI, "cooldown")]
    # After the cooldown (30 s by default) one probe goes to the provider again.
    probe = make_plan([OAI, CLAUDE], cooldowns=cooldowns)
    assert probe.first(4.0 + 30.0) == OAI
    probe.succeeded(OAI.label, 34.5)
    assert probe.transitions == [Transition(OAI.label, BreakerState.CLOSED, "probe succeeded")]


@pytest.mark.parametrize(("retry_after", "held_for"), [(3.0, 3.0), (None, DEFAULT_HOLD),
                                                       (0.25, 0.25)])
def test_a_429_holds_the_key_for_its_retry_after(retry_after: float | None,
                                                 held_for: float) -> None:
    cooldowns = Cooldowns()
    plan = make_plan([OAI, CLAUDE], cooldowns=cooldowns)
    plan.first(100.0)
    plan.failed(RATE, status=429, breaker_key=OAI.label, now=100.0, retry_after=retry_after)
    assert plan.transitions == [Transition(OAI.label, BreakerState.OPEN,
                                           f"rate limited; retry after {held_for:g} s")]
    assert cooldowns.open_until(OAI.label) == pytest.approx(100.0 + held_for)
    assert not cooldowns.available(OAI.label, 100.0 + held_for - 0.01)
    assert cooldowns.available(OAI.label, 100.0 + held_for)


def test_a_retry_after_a_429_waits_for_the_plans_own_hold() -> None:
    cooldowns = Cooldowns()
    plan = make_plan([OAI, CLAUDE], FailurePolicy(retry=RetryRules(attempts=1)),
                     cooldowns=cooldowns)
    plan.first(0.0)
    step = plan.failed(RATE, status=429, breaker_key=OAI.label, now=0.0, retry_after=None,
                       unit=0.5)
    assert step.kind is RETRY
    assert cooldowns.available(OAI.label, 0.0 + step.delay)


def test_a_429_with_zero_retry_after_holds_nothing() -> None:
    cooldowns = Cooldowns()
    plan = make_plan([OAI, CLAUDE], FailurePolicy(retry=RetryRules(attempts=1)),
                     cooldowns=cooldowns)
    plan.first(0.0)
    step = plan.failed(RATE, status=429, breaker_key=OAI.label, now=0.0, retry_after=0.0)
    assert step == Step(RETRY, OAI, 0.0, "429")
    assert plan.transitions == []
    assert cooldowns.state(OAI.label, 0.0) is BreakerState.CLOSED


@pytest.mark.parametrize(("failure", "status"), [(CLIENT, 400), (CLIENT, 422), (OK, 200),
                                                 (CONTEXT, 400)])
def test_answers_the_backend_meant_count_as_alive(failure: FailureClass, status: int) -> None:
    cooldowns = Cooldowns(CooldownConfig(min_requests=100))  # only failures in a row open
    for _ in range(4):
        cooldowns.record(OAI.label, 0.0, ok=False)
    plan = make_plan([OAI, CLAUDE], cooldowns=cooldowns)
    plan.first(0.0)
    plan.failed(failure, status=status, breaker_key=OAI.label, now=0.0)
    # The row of failures is broken: a fifth failure does not open the breaker.
    assert cooldowns.record(OAI.label, 0.1, ok=False) is None
    assert cooldowns.state(OAI.label, 0.1) is BreakerState.CLOSED
    assert plan.transitions == []


def test_succeeded_records_ok_and_notes_no_transition_when_closed() -> None:
    cooldowns = Cooldowns(CooldownConfig(min_requests=100))
    for _ in range(4):
        cooldowns.record(OAI.label, 0.0, ok=False)
    plan = make_plan([OAI], cooldowns=cooldowns)
    plan.first(0.0)
    plan.succeeded(OAI.label, 0.0)
    assert plan.transitions == []
    assert cooldowns.record(OAI.label, 0.1, ok=False) is None


def test_pool_endpoint_keys_are_counted_under_the_key_given() -> None:
    cooldowns = Cooldowns()
    key = "default/pool@10.0.0.1:8000"
    plan = make_plan([POOL], FailurePolicy(retry=RetryRules(connect_retries=10)),
                     cooldowns=cooldowns)
    plan.first(0.0)
    for _ in range(5):
        assert plan.failed(CONNECT, status=0, breaker_key=key, now=0.0).kind is RETRY
    assert plan.transitions == [Transition(key, BreakerState.OPEN, "5 consecutive failures")]
    assert cooldowns.state(key, 0.0) is BreakerState.OPEN
    assert cooldowns.state(POOL.label, 0.0) is BreakerState.CLOSED


def test_without_cooldowns_nothing_is_recorded() -> None:
    plan = make_plan([OAI, CLAUDE], cooldowns=None)
    plan.first(0.0)
    plan.succeeded(OAI.label, 0.0)
    for failure in (CONNECT, RATE, CLIENT):
        plan.failed(failure, status=0, breaker_key=OAI.label, now=0.0)
    assert plan.transitions == []


# -- backend references -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("ref", "label", "is_pool"),
    [(POOL, "pool/default/pool", True), (OAI, "provider/default/oai", False),
     (BackendRef(BackendKind.PROVIDER, "team/claude"), "provider/team/claude", False)],
)
def test_backend_ref_label(ref: BackendRef, label: str, is_pool: bool) -> None:
    assert ref.label == label
    assert ref.is_pool is is_pool


def test_pool_and_provider_of_one_name_are_different_backends() -> None:
    assert pool_ref("default/x") != provider_ref("default/x")
    assert len({pool_ref("default/x"), provider_ref("default/x"), pool_ref("default/x")}) == 2


@pytest.mark.parametrize("value", ["user-1", "", "ünïcödé", "\udcff", "x" * 10_000])
def test_sticky_unit_is_a_fixed_draw_in_the_unit_interval(value: str) -> None:
    draw = sticky_unit(value)
    assert 0.0 <= draw < 1.0
    assert sticky_unit(value) == draw
    assert sticky_unit(value, "split") != sticky_unit(value, "rewrite")


def test_sticky_unit_spreads_users() -> None:
    draws = [sticky_unit(f"user-{i}") for i in range(2000)]
    assert len(set(draws)) == 2000
    assert 0.45 < sum(draws) / len(draws) < 0.55
    assert sum(d < 0.25 for d in draws) == pytest.approx(500, abs=75)


@pytest.mark.parametrize("digest", [b"\xff" * 8, b"\xff" * 7 + b"\x00", b"\x00" * 8])
def test_sticky_unit_stays_below_one_for_the_largest_digests(
        monkeypatch: pytest.MonkeyPatch, digest: bytes) -> None:
    # Fixed: 0xffffffffffffffff / 2.0**64 rounds to 1.0, and WeightedChoice.choose(1.0)
    # raises IndexError.
    class FakeHash:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def digest(self) -> bytes:
            return digest

    monkeypatch.setattr(backends.hashlib, "blake2b", FakeHash)
    draw = sticky_unit("anyone")
    assert 0.0 <= draw < 1.0
    assert WeightedChoice.of([("a", 1), ("b", 1)]).choose(draw) in ("a", "b")


def test_an_unusable_fallback_moves_on_without_spending_the_budget() -> None:
    budget = RetryBudget(percent=0.0, min_retries=1)
    plan = make_plan([POOL, CLAUDE, OAI], budget=budget)
    plan.first(0.0)
    step = plan.failed(FIVE, status=500, breaker_key="k", now=0.0)
    assert step == Step(FALLBACK, CLAUDE, 0.0, "5xx")
    step = plan.unusable("unsupported-request", 0.0)
    assert step == Step(FALLBACK, OAI, 0.0, "unsupported-request")
    assert budget.retries(0.0) == 1
    assert [s.reason for s in plan.skipped] == ["unsupported-request"]
    assert plan.unusable("unsupported-request", 0.0) == Step(
        GIVE_UP, reason="no fallback can take the request")


def test_a_pool_retry_goes_elsewhere_so_the_endpoints_retry_after_does_not_apply() -> None:
    retry = RetryRules(attempts=1, retry_after_max=1.0, backoff_base=0.1, backoff_max=2.0)
    plan = make_plan([POOL, OAI], FailurePolicy(retry=retry))
    plan.first(0.0)
    step = plan.failed(FailureClass.RATE_LIMITED, status=429, breaker_key="default/pool@a",
                       now=0.0, retry_after=30.0, unit=0.5)
    assert step == Step(RETRY, POOL, pytest.approx(0.05), "429")


def test_a_pool_with_no_routable_endpoint_is_passed_over() -> None:
    plan = AttemptPlan([POOL, OAI], FailurePolicy(), budget=roomy_budget(), cooldowns=None,
                       pool_available=lambda backend, now: backend != POOL)
    assert plan.first(0.0) == OAI
    assert [(s.backend, s.reason) for s in plan.skipped] == [(POOL, "unhealthy")]


def test_an_extra_attempt_is_filed_with_its_request() -> None:
    # Request at 0.999 s, its fallback at 1.001 s: both leave the 10 s window together, so a
    # 100 % budget never lets retries outnumber requests.
    budget = RetryBudget(percent=100.0, min_retries=0)
    plan = make_plan([OAI, POOL], budget=budget)
    plan.first(0.999)
    assert plan.failed(FailureClass.SERVER_ERROR, status=500, breaker_key=OAI.label,
                       now=1.001).kind is FALLBACK
    assert (budget.requests(10.5), budget.retries(10.5)) == (0, 0)


def test_last_says_whether_anything_is_left_to_try() -> None:
    plan = make_plan([POOL, OAI])
    plan.first(0.0)
    assert not plan.last
    plan.failed(FailureClass.SERVER_ERROR, status=500, breaker_key="k", now=0.0)
    assert plan.last

"""Statistics, tables, verdicts and the Markdown section of the failover benchmark.

Latencies are of requests answered 200 and not streamed (streams are a tenth of the requests
and differ only by framing), in milliseconds. "Added" latency compares the requests of a phase
that took more than one attempt (a retry or a fallback) with the same target's ``healthy``
phase and with the provider measured directly (``provider-direct``), percentile by percentile.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import machine
from loadgen import percentile

if TYPE_CHECKING:
    from failover import Result, Settings, TargetRun

HEADING = "## Failover"
OVERALL = "all phases"


@dataclass(slots=True)
class PhaseStats:
    target: str
    phase: str
    sent: int = 0
    streams: int = 0
    plain_errors: int = 0  # non-streamed requests that failed at the client
    stream_errors: int = 0
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    stream_errors_by_kind: Counter[str] = field(default_factory=Counter)
    extra_attempts: int = 0  # requests with attempts > 1
    via_provider: int = 0
    p50: float = math.nan  # ms, plain 200s
    p99: float = math.nan
    retried_n: int = 0  # plain 200s with attempts > 1
    retried_p50: float = math.nan
    retried_p99: float = math.nan

    @property
    def plain(self) -> int:
        return self.sent - self.streams

    @property
    def plain_error_rate(self) -> float:
        return self.plain_errors / self.plain if self.plain else math.nan


def _stats(target: str, phase: str, results: Sequence[Result]) -> PhaseStats:
    stats = PhaseStats(target, phase, sent=len(results))
    ok_plain: list[float] = []
    retried: list[float] = []
    for r in results:
        stats.streams += r.stream
        if not r.ok:
            stats.errors_by_kind[r.error] += 1
            if r.stream:
                stats.stream_errors += 1
                stats.stream_errors_by_kind[r.error] += 1
            else:
                stats.plain_errors += 1
        stats.extra_attempts += r.attempts > 1
        stats.via_provider += r.ok and r.via_provider
        if r.ok and not r.stream:
            ok_plain.append(r.latency * 1000)
            if r.attempts > 1:
                retried.append(r.latency * 1000)
    ok_plain.sort()
    retried.sort()
    stats.p50, stats.p99 = percentile(ok_plain, 0.5), percentile(ok_plain, 0.99)
    stats.retried_n = len(retried)
    stats.retried_p50, stats.retried_p99 = percentile(retried, 0.5), percentile(retried, 0.99)
    return stats


@dataclass(slots=True)
class Summary:
    phases: tuple[str, ...]
    rows: list[PhaseStats]
    provider: PhaseStats | None  # the provider measured directly

    def find(self, target: str, phase: str) -> PhaseStats | None:
        return next((s for s in self.rows if s.target == target and s.phase == phase), None)

    @property
    def targets(self) -> list[str]:
        return list(dict.fromkeys(s.target for s in self.rows))


def summarize(runs: Sequence[TargetRun], phases: Sequence[str], calibration: str) -> Summary:
    rows: list[PhaseStats] = []
    provider: PhaseStats | None = None
    for run in runs:
        if run.target == calibration:
            provider = _stats(calibration, calibration, run.results)
            continue
        if not run.results:
            continue
        for phase in phases:
            rows.append(_stats(run.target, phase, [r for r in run.results if r.phase == phase]))
        rows.append(_stats(run.target, OVERALL, run.results))
    return Summary(tuple(phases), rows, provider)


# --- tables -------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def _added(value: float, base: float) -> str:
    if math.isnan(value) or math.isnan(base):
        return "-"
    return f"{value - base:+.0f}"


def _share(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.1f} %)" if total else "0"


def _kinds(counter: Counter[str]) -> str:
    return ", ".join(f"{kind} x{n}" for kind, n in counter.most_common(4)) or "-"


PHASE_HEAD = ("target", "phase", "sent (streamed)", "non-stream errors", "stream errors",
              "error kinds", "attempts > 1", "answered by provider", "p50 ms", "p99 ms")


def phase_rows(summary: Summary) -> list[list[str]]:
    rows: list[list[str]] = []
    if summary.provider is not None:
        p = summary.provider
        rows.append([p.target, "(calibration)", f"{p.sent} ({p.streams})",
                     _share(p.plain_errors, p.plain), str(p.stream_errors),
                     _kinds(p.errors_by_kind), "-", "all", _ms(p.p50), _ms(p.p99)])
    for s in summary.rows:
        rows.append([s.target, s.phase, f"{s.sent} ({s.streams})",
                     _share(s.plain_errors, s.plain), str(s.stream_errors),
                     _kinds(s.errors_by_kind), _share(s.extra_attempts, s.sent),
                     _share(s.via_provider, s.sent), _ms(s.p50), _ms(s.p99)])
    return rows


ADDED_HEAD = ("target", "phase", "attempts > 1 (200, non-stream)", "p50 ms", "p99 ms",
              "+p50 vs healthy", "+p99 vs healthy", "+p50 vs provider", "+p99 vs provider")


def added_rows(summary: Summary) -> list[list[str]]:
    rows: list[list[str]] = []
    provider = summary.provider
    for s in summary.rows:
        if s.retried_n == 0:
            continue
        healthy = summary.find(s.target, summary.phases[0])
        rows.append([
            s.target, s.phase, str(s.retried_n), _ms(s.retried_p50), _ms(s.retried_p99),
            _added(s.retried_p50, healthy.p50 if healthy else math.nan),
            _added(s.retried_p99, healthy.p99 if healthy else math.nan),
            _added(s.retried_p50, provider.p50 if provider else math.nan),
            _added(s.retried_p99, provider.p99 if provider else math.nan)])
    return rows


# --- verdicts -----------------------------------------------------------------------------------


def verdicts(summary: Summary, settings: Settings) -> list[str]:
    lines: list[str] = []
    for target in summary.targets:
        overall = summary.find(target, OVERALL)
        if overall is None:
            continue
        if target == "direct":
            worst = [summary.find(target, phase) for phase in summary.phases]
            text = ", ".join(f"{s.phase} {100 * s.plain_error_rate:.0f} %" for s in worst
                             if s is not None)
            lines.append(f"direct (no gateway): non-stream error rate by phase: {text} — "
                         "what the failures cost clients without a gateway.")
            continue
        met = overall.plain_errors == 0
        bad = [f"{s.phase}: {s.plain_errors} ({_kinds(s.errors_by_kind)})"
               for p in summary.phases if (s := summary.find(target, p)) and s.plain_errors]
        lines.append(
            f"{target}: non-stream client errors {overall.plain_errors} of {overall.plain} — "
            + ("target 0 **met**." if met else "target 0 **missed** (" + "; ".join(bad) + ")."))
        if overall.stream_errors:
            lines.append(f"{target}: {overall.stream_errors} of {overall.streams} streams "
                         f"failed ({_kinds(overall.stream_errors_by_kind)}).")
        throttled = summary.find(target, summary.phases[2])
        if (target.startswith("inferlane") and throttled is not None and throttled.retried_n
                and throttled.retried_p99 >= 800 * settings.retry_after_s):
            lines.append(
                f"{target}: in `{throttled.phase}` the requests that took a second attempt "
                f"needed p50 {_ms(throttled.retried_p50)} ms / p99 "
                f"{_ms(throttled.retried_p99)} ms: a 429 from one replica makes the "
                "same-pool retry wait that replica's Retry-After "
                f"({settings.retry_after_s:g} s) although the retry goes to another replica.")
        down = summary.find(target, summary.phases[3]) if len(summary.phases) > 3 else None
        provider = summary.provider
        if down is not None and down.retried_n and provider is not None:
            lines.append(
                f"{target}: with the whole pool down, requests that fell back took p50 "
                f"{_ms(down.retried_p50)} ms / p99 {_ms(down.retried_p99)} ms, "
                f"{_added(down.retried_p50, provider.p50)} / "
                f"{_added(down.retried_p99, provider.p99)} ms over the provider asked directly.")
    return lines


def counter_lines(runs: Sequence[TargetRun]) -> list[str]:
    """inferlane's own account of each run: retries, fallbacks and why it gave up."""
    lines: list[str] = []
    for run in runs:
        counters = run.gateway_counters
        if not counters:
            continue

        def by_reason(name: str, counters: dict[str, float] = counters) -> str:
            parts = [(key.split("reason=", 1)[1].split(",", 1)[0].rstrip("}"), value)
                     for key, value in counters.items()
                     if key.startswith(name + "{") and value and "reason=" in key]
            total = sum(value for _, value in parts)
            detail = ", ".join(f"{reason} {value:.0f}" for reason, value in parts)
            return f"{total:.0f}" + (f" ({detail})" if detail else "")

        lines.append(
            f"{run.target} (its /metrics at the end): retries "
            f"{by_reason('inferlane_retries_total')}, fallbacks "
            f"{by_reason('inferlane_fallbacks_total')}, gave up "
            f"{by_reason('inferlane_retries_exhausted_total')}.")
        exhausted = sum(v for k, v in counters.items()
                        if k.startswith("inferlane_retries_exhausted_total{")
                        and "budget" in k)
        if exhausted:
            lines.append(
                f"{run.target}: why it gave up — with the whole pool cooling down, every request "
                "still makes its first attempt at one of the pool's failing replicas (with "
                "`retry.attempts: 1` a second one at another), so each needs at least one "
                "budgeted extra attempt, the fallback; 100 % (the schema's maximum) allows one "
                "per request only on average, and not even exactly that: a request and its "
                "fallback can be counted in different one-second buckets, and when the "
                "request's bucket leaves the 10-s window first the budget is briefly "
                "overdrawn. With the budget spent, the replica's 500 or 429 is answered to the "
                "client although the provider is healthy.")
    return lines


# --- Markdown -----------------------------------------------------------------------------------


def markdown(summary: Summary, runs: Sequence[TargetRun], env: machine.Environment,
             settings: Settings) -> str:
    load_lines = [f"`{r.target}`: background {r.background_cpu:.2f} CPU, gateway "
                  f"{'-' if math.isnan(r.target_cpu) else f'{r.target_cpu:.2f}'} CPU, "
                  f"loadavg after {r.loadavg}" + (f" ({'; '.join(r.notes)})" if r.notes else "")
                  for r in runs]
    parts = [
        HEADING, "",
        f"Command: `{env.command}` ({env.date}, took {env.duration}).", "",
        f"Setup: a primary InferencePool of three `inferlane sim` replicas (one process each, "
        f"`--time-scale {settings.time_scale:g}`) and a fallback provider (a fourth `inferlane "
        "sim`, an `openai-compatible` Provider). "
        f"{settings.concurrency} closed-loop clients send chat completions with "
        f"`max_tokens: {settings.max_tokens}`; every {settings.stream_every}th request of a "
        f"client streams; a client whose request failed waits {settings.error_pause_s:g} s "
        "before its next (about one healthy request), so a target that fails in a "
        f"millisecond does not spin the closed loop. Phases of {settings.phase_s:g} s: "
        "`healthy`; `r0 500` (replica 0 answers 500 to everything, set with "
        "`POST /sim/faults`); `+r1 429` (replica 1 also "
        f"answers 429 with `Retry-After: {settings.retry_after_s:g}`); `pool down` (replica 2 "
        "SIGKILLed as well); `recovered` (faults cleared, a fresh replica 2 on the same port). "
        "A request belongs to the phase it was sent in.", "",
        "Targets, one after the other, each a fresh process against the same replicas (reset "
        "between targets): `direct` — the client round-robins over the three replicas itself, "
        "no retries (what the failures cost without a gateway); `inferlane` — `inferlane "
        "serve`, default scheduling profile, a TrafficPolicy with the provider as fallback, "
        f"retry budget {settings.budget_percent:g} % + {settings.budget_min_retries} per 10 s, "
        f"cooldown {settings.cooldown_s:g} s, no same-pool retry; `inferlane-retry` — the same "
        "plus `retry: {attempts: 1}` on the route rule (a 5xx/429 is first retried on another "
        "replica); `litellm` — LiteLLM proxy (one worker, `simple-shuffle`), the replicas as "
        f"deployments, `fallbacks` to the provider, `num_retries: {settings.litellm_retries}`, "
        f"`cooldown_time: {settings.cooldown_s:g}`. `provider-direct` is the provider asked "
        "directly at the same concurrency, before the targets: the floor of a fallback's "
        "latency.", "",
        "The retry budget: the default (20 % + 3 per 10 s) exists so a struggling backend is "
        "not hit by retry storms; but here every request of `pool down` *must* take an extra "
        "attempt (the fallback) to succeed, which a 20 % budget forbids by design — 100 % "
        "(the most the schema allows) is meant to let each request take one, and the "
        "100-per-10-s floor covers a phase's first second or so. (A connect failure's retry "
        "on another replica of the pool is not charged to the budget.) Whether that is "
        "enough is in the verdicts.", "",
        "Verdicts:", "",
    ]
    parts += [f"- {line}" for line in verdicts(summary, settings) + counter_lines(runs)]
    parts += ["", "### Errors and fallbacks per phase", "",
              "`attempts > 1`: `x-inferlane-attempts` above 1 (LiteLLM: "
              "`x-litellm-attempted-retries` + `x-litellm-attempted-fallbacks` above 0); "
              "`answered by provider`: `x-inferlane-backend: provider/...` (LiteLLM: "
              "`x-litellm-model-api-base`). Latency: requests answered 200, not streamed, "
              "send to last byte at the client.", "",
              machine.markdown_table(PHASE_HEAD, phase_rows(summary)), "",
              "### Added latency of requests that took a retry or a fallback", "",
              "Percentiles of those requests minus the same percentile of the target's "
              "`healthy` phase and of `provider-direct` (ms).", "",
              machine.markdown_table(ADDED_HEAD, added_rows(summary)), ""]
    broken = {s.target: s.stream_errors_by_kind["stream-error"] for s in summary.rows
              if s.phase == OVERALL and s.target != "direct"}
    parts += ["Notes:", "",
              "- A stream whose replica dies after the status line went out cannot be moved "
              "to another backend: it ends with an in-stream error event (`stream-error`: "
              "streams in flight on replica 2 when it is SIGKILLed at the end of `+r1 429`; "
              "this run: " + ", ".join(f"{t} {n}" for t, n in broken.items()) + "). "
              "Non-streamed requests in flight on it are retried (connect-failure) and answered "
              "by another backend, late: that is the p99 of `+r1 429` for `inferlane`.",
              "- Without a same-pool retry (`inferlane`), a request that meets the failing "
              "replica 0 or the throttling replica 1 goes to the provider, not to the healthy "
              "replica 2; the cooldown keeps that to the few requests before a replica's "
              "breaker opens (5 failures in a row, or a 429's Retry-After) and its half-open "
              "probes.",
              "- With every replica of the pool cooling down, the pool is passed over without "
              "an attempt, except for the breakers' half-open probes (one request per replica "
              "and cooldown period, or per `Retry-After` of the throttling one): those are the "
              "`pool down` requests with attempts > 1. A pool with no endpoint its picker would "
              "use (the dead replica is stale) is skipped the same way. Earlier runs of this "
              "benchmark, before those two rules, sent every request to a cooling replica first "
              "and, with a same-pool retry, ran out of retry budget (see the commits of "
              "2026-11-29).",
              "- LiteLLM's `+ vs provider` includes its own overhead at this load (its healthy "
              "p50 is about twice inferlane's and the direct client's: one worker uses most of "
              "a core); `+ vs healthy` is its added latency of falling back.",
              "- One run; differences of a few ms are within this machine's noise.", "",
              "Machine load during the run (a shared 2-core VM that other sessions use; "
              "background = CPU used by processes this benchmark did not start, measured over "
              "each target's phases): " + "; ".join(load_lines) + ".", ""]
    parts += [f"Versions: {', '.join(f'{k} {v}' for k, v in env.versions.items())}. "
              f"Machine: {env.cpu_model}, {env.cpus} CPUs, {env.memory}, kernel {env.kernel}, "
              f"Python {env.python}; {env.layout}.", ""]
    return "\n".join(parts)

"""Tables, verdicts and Markdown of the priority benchmark (issue 4).

``priority.py`` runs the modes and hands their ``ModeRun``s, per-step statistics and fairness
(``priority_workload``) here; ``machine.write_markdown`` puts the section into the page.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import machine
import priority_workload as pw
import routing
from priority_workload import OFF, ON, ModeRun, Settings

HEADING = "## Priority and flow control (issue 4)"
MiB = 1024 * 1024
QUEUE_LIMIT = 5000  # FlowControlConfig().max_requests: the configs here set no limits


def _ms(value: float) -> str:
    return "-" if value != value else f"{value * 1000:.0f}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{count}x {code.strip()}" for code, count in errors.items()) or "0"


CLASS_HEAD = ("mode", "load", "objective", "sent", "200", "errors (status code)",
              "TTFT p50 ms", "TTFT p90 ms", "TTFT p99 ms", "e2e p50 ms", "TTFT ≤ 1 s")


def class_rows(stats: Sequence[pw.ClassStats]) -> list[list[str]]:
    return [[
        s.mode, f"{s.load:g}x", s.objective, str(s.sent), str(s.ok), _errors(s.errors),
        _ms(s.ttft["p50"]), _ms(s.ttft["p90"]), _ms(s.ttft["p99"]), _ms(s.e2e_p50),
        "-" if s.attainment != s.attainment else f"{s.attainment:.1%}",
    ] for s in stats]


FAIR_HEAD = ("mode", "tenant", "demand req/s", "served req/s", "max-min fair req/s",
             "served / fair")


def fairness_rows(results: Sequence[pw.Fairness]) -> list[list[str]]:
    rows = []
    for f in results:
        for tenant in f.demand:
            rows.append([f.mode, tenant, f"{f.demand[tenant]:.2f}", f"{f.served[tenant]:.2f}",
                         f"{f.fair[tenant]:.2f}", f"{f.ratio[tenant]:.2f}"])
        rows.append([f.mode, "Jain's index", "", "", "", f"{f.jain:.3f}"])
    return rows


GATEWAY_HEAD = ("mode", "RSS start MiB", "RSS peak MiB", "RSS end MiB", "queued peak",
                "queued at end of 2x", "queued after drain", "max waiting on a replica",
                "gateway CPU", "background CPU", "drain s")


def _queue_text(queued: dict[str, float]) -> str:
    parts = [f"p{p}: {v:.0f}" for p, v in sorted(queued.items(), key=lambda kv: -int(kv[0]))
             if v]
    return ", ".join(parts) or "0"


def peak_queue(run: ModeRun) -> dict[str, float]:
    peak: dict[str, float] = {}
    for sample in run.samples:
        for priority, value in sample.queued.items():
            peak[priority] = max(peak.get(priority, 0.0), value)
    return peak


def peak_engine_waiting(run: ModeRun) -> float:
    """The longest waiting queue sampled on any one replica during the run."""
    return max((w for s in run.samples for w in s.engine_waiting if w == w), default=math.nan)


def gateway_rows(runs: Sequence[ModeRun]) -> list[list[str]]:
    return [[
        r.mode, f"{r.rss_start / MiB:.0f}", f"{max(s.rss for s in r.samples) / MiB:.0f}",
        f"{r.rss_end / MiB:.0f}", _queue_text(peak_queue(r)),
        _queue_text(r.queued_at_overload_end), _queue_text(r.samples[-1].queued),
        f"{peak_engine_waiting(r):.0f}", f"{r.cpu:.2f}", f"{r.background_cpu:.2f}",
        f"{r.drain_s:.1f}",
    ] for r in runs]


def band_backlog(run: ModeRun, window: tuple[float, float], priority: str
                 ) -> tuple[float, float]:
    """Share of the samples in ``window`` with requests of ``priority`` queued, and their mean
    number queued."""
    inside = [s.queued.get(priority, 0.0) for s in run.samples
              if window[0] <= s.at < window[1]]
    if not inside:
        return 0.0, 0.0
    return sum(1 for v in inside if v > 0) / len(inside), sum(inside) / len(inside)


def _find(stats: Sequence[pw.ClassStats], mode: str, objective: str, step: int
          ) -> pw.ClassStats | None:
    return next((s for s in stats if s.mode == mode and s.objective == objective
                 and s.step == step), None)


def verdicts(stats: Sequence[pw.ClassStats], fair: Sequence[pw.Fairness],
             runs: Sequence[ModeRun], settings: Settings) -> list[str]:
    """One line per target, judged on ``flow-control on`` (the default profile); the other
    modes' numbers are given for comparison."""
    last = len(settings.steps) - 1
    top = settings.steps[-1].load
    others = [mode.name for mode in settings.modes() if mode.name != ON]
    lines: list[str] = []

    def also(describe: Callable[[str], str | None]) -> str:
        parts = [f"{name}: {text}" for name in others if (text := describe(name)) is not None]
        return f" For comparison, {'; '.join(parts)}." if parts else ""

    def critical(mode: str) -> str | None:
        found = _find(stats, mode, "critical", last)
        return None if found is None else (f"{found.attainment:.1%}, "
                                           f"{found.sent - found.ok} errors")

    crit = _find(stats, ON, "critical", last)
    if crit is not None:
        errors = crit.sent - crit.ok
        met = crit.attainment >= 0.99 and errors == 0
        late = sum(1 for o in _outcomes(runs, ON, "critical", last) if o.ok and o.ttft > 1.0)
        lines.append(
            f"Critical at {top:g}x, TTFT ≤ 1 s for ≥ 99 % and zero errors: "
            f"**{'met' if met else 'missed'}** ({crit.attainment:.1%} of {crit.sent}; {late} "
            f"answered later than 1 s, TTFT p50 {_ms(crit.ttft['p50'])} ms, p99 "
            f"{_ms(crit.ttft['p99'])} ms; {errors} errors)." + also(critical))

    def standard(mode: str) -> str | None:
        found = _find(stats, mode, "standard", last)
        return None if found is None else (
            f"p50 {_ms(found.ttft['p50'])} ms, p99 {_ms(found.ttft['p99'])} ms, "
            f"{found.sent - found.ok} errors")

    steps = [s for s in stats if s.mode == ON and s.objective == "standard"]
    if steps:
        errors = sum(s.sent - s.ok for s in steps)
        sent = sum(s.sent for s in steps)
        met = errors <= 0.01 * sent
        lines.append(
            f"Standard degrades gracefully (≤ 1 % errors over the ramp; latency grows by "
            f"queueing instead): **{'met' if met else 'missed'}** ({errors} errors of {sent}; "
            f"at {top:g}x TTFT {standard(ON)})." + also(standard))

    for mode in [ON, *others]:
        if not any(r.mode == mode for r in runs) or mode == OFF:
            continue
        shed = Counter(o.planned.objective for r in runs if r.mode == mode
                       for o in r.outcomes if o.code == "request_shed")
        wrong = {k: v for k, v in shed.items() if k != "sheddable"}
        other = Counter(f"{o.planned.objective} {o.status} {o.code}" for r in runs
                        if r.mode == mode for o in r.outcomes
                        if o.code and o.code != "request_shed")
        label = "Only sheddable requests are shed" + ("" if mode == ON else f" ({mode})")
        lines.append(
            f"{label}: **{'met' if not wrong and shed else 'missed'}** (429 request_shed by "
            f"objective: {dict(shed) or 'none'}"
            + (f"; other errors: {dict(other)}" if other else "; no other errors")
            + ("; nothing was shed: the pool never counted as saturated" if not shed else "")
            + ").")

    def fairness_text(mode: str) -> str | None:
        found = next((f for f in fair if f.mode == mode), None)
        if found is None or "tenant-a" not in found.ratio:
            return None
        return f"tenant-a {found.ratio['tenant-a']:.2f}, Jain {found.jain:.3f}"

    fair_on = next((f for f in fair if f.mode == ON), None)
    run_on = next((r for r in runs if r.mode == ON), None)
    if fair_on is not None and "tenant-a" in fair_on.ratio and run_on is not None:
        ratio = fair_on.ratio["tenant-a"]
        share, mean = band_backlog(run_on, fair_on.window, "0")
        saturated = share >= 0.5
        lines.append(
            f"Fairness in the saturated standard band at {top:g}x, tenant-a (10x volume) gets "
            f"no more than its max-min fair share (served / fair ≤ 1.10, with standard "
            f"requests queued in the gateway in ≥ 50 % of the window's samples): "
            f"**{'met' if ratio <= 1.10 and saturated else 'missed'}** ({ratio:.2f}; Jain's "
            f"index {fair_on.jain:.3f}; standard queued in {share:.0%} of the samples, "
            f"{mean:.0f} on average"
            + ("" if saturated else ": the band was rarely backlogged in the gateway, so its "
                                    "fairness was hardly exercised")
            + ")." + also(fairness_text))
    if run_on is not None:
        peak_rss = max(s.rss for s in run_on.samples)
        queued_peak = sum(peak_queue(run_on).values())
        drained = not any(run_on.samples[-1].queued.values())
        growth = (run_on.rss_end - run_on.rss_start) / MiB
        met = queued_peak <= QUEUE_LIMIT and drained and growth <= 50
        lines.append(
            f"Gateway memory bounded under sustained overload (queue within its limits and "
            f"empty after the drain, RSS at the end ≤ 50 MiB above the start): "
            f"**{'met' if met else 'missed'}** (RSS {run_on.rss_start / MiB:.0f} → peak "
            f"{peak_rss / MiB:.0f} → end {run_on.rss_end / MiB:.0f} MiB; at most "
            f"{queued_peak:.0f} queued, limit {QUEUE_LIMIT}; "
            f"{'empty' if drained else 'not empty'} after the drain). One overload of "
            f"{settings.steps[-1].seconds:g} s: a slow leak would need longer runs to show.")
    busy = [r for r in runs if r.background_cpu > machine.BUSY_BACKGROUND_CPU]
    if busy:
        lines.append(
            "Caution: processes this benchmark did not start used "
            + ", ".join(f"{r.background_cpu:.2f} CPU during {r.mode}" for r in busy)
            + " (1.0 = one core); latencies of those modes include that interference.")
    return lines


def _outcomes(runs: Sequence[ModeRun], mode: str, objective: str, step: int
              ) -> list[pw.Outcome]:
    return [o for r in runs if r.mode == mode for o in r.outcomes
            if o.planned.objective == objective and o.planned.step == step]


def slo_line(runs: Sequence[ModeRun]) -> str:
    parts = []
    for run in runs:
        met = run.metrics_end.get("slo critical met", 0)
        missed = run.metrics_end.get("slo critical missed", 0)
        parts.append(f"{run.mode}: {met:.0f} met, {missed:.0f} missed")
    return ("The gateway's own count (`inferlane_objective_ttft_slo_total`, critical, whole "
            "ramp plus the readiness ping, streams that reached a first token): "
            + "; ".join(parts) + ".")


def engine_line(runs: Sequence[ModeRun]) -> str:
    parts = [f"{r.mode} {peak_engine_waiting(r):.0f}" for r in runs]
    return ("Longest waiting queue sampled on one replica (`vllm:num_requests_waiting`, every "
            "sample): " + ", ".join(parts) + "; the saturation detector calls a replica "
            "saturated at 5 waiting (default profile) or at the tuned threshold. Requests start "
            "to queue in the gateway only when every replica is saturated, so on the way into "
            "overload (the 1.5x step) the servers first fill up to that many waiting, in their "
            "own first-come order, and critical requests that arrive then wait behind them; "
            "once the gateway queues, it releases requests only into free batch slots and the "
            "servers' queues drain. `saturationDetector.queueDepthThreshold: 1` (the tuned "
            "mode) moves that point earlier, at some cost to prefix-cache affinity near "
            "saturation (the routing benchmark's shared-prefix p99 rose from 110 to 460 ms in "
            "a replay with that threshold).")


def markdown(stats: Sequence[pw.ClassStats], fair: Sequence[pw.Fairness],
             runs: Sequence[ModeRun], capacity: float, capacity_note: str,
             env: machine.Environment, settings: Settings) -> str:
    ramp = ", ".join(f"{s.load:g}x for {s.seconds:g} s" for s in settings.steps)
    window = fair[0].window if fair else (math.nan, math.nan)
    tuned = ""
    if settings.tuned_threshold is not None:
        tuned = (f" A third gateway, `{ON}, queueDepthThreshold {settings.tuned_threshold}`, "
                 "replaces the default profile by an EndpointPickerConfig with the same plugins "
                 "and weights and `saturationDetector.queueDepthThreshold: "
                 f"{settings.tuned_threshold}` (flow control on); the verdicts judge "
                 f"`{ON}` (defaults), the others are for comparison.")
    parts = [
        HEADING, "",
        f"Command: `{env.command}` ({env.date}, took {env.duration}).", "",
        f"Simulated fleet: one `inferlane sim` process with {settings.replicas} replicas, "
        f"`{' '.join(routing.SIM_ARGS)}`, time scale 1 (simulated seconds = wall seconds). "
        f"Gateway `{ON}`: `inferlane serve`, one pool over the fleet with the default profile "
        "(its saturation detector calls a replica saturated at 5 waiting requests or 80 % KV "
        "cache, the pool when every replica is), three InferenceObjectives (`critical` "
        "priority 2 with `inferlane.dev/ttft-target: 1s`; `standard` priority 0, the pool's "
        "`inferlane.dev/default-objective`, sent without the objective header; `sheddable` "
        "priority -1) and no other flow-control settings (queue limits 5000 requests, 1000 per "
        f"band, TTL 30 s). `{OFF}`: the same config plus `inferlane.dev/flow-control: "
        "disabled` on the pool (pass-through)." + tuned + " The gateways run one after the "
        "other against the same fleet, each a fresh process, the fleet idle in between; "
        "prompts carry a per-mode salt so no run inherits another's prefix cache. Arrival "
        "times, objectives and tenants are the same seeded plan for every mode.", "",
        f"Capacity C = {capacity:.1f} req/s ({capacity_note}).", "",
        "Workload: streaming chat completions (`stream_options.include_usage`), short chat "
        "turns (prompt ~150 tokens, answer ~64 tokens, log-normal, capped at 1000 / 200), "
        f"open-loop Poisson arrivals ramping {ramp}, then no more arrivals until every request "
        "is answered. Mix per request: 20 % critical, 50 % standard, 30 % sheddable; tenant "
        "(`x-gateway-inference-fairness-id`) drawn independently with weights 10:1:1:1 "
        "(tenant-a sends 10x each other tenant). Rows are per load step by *send* time. TTFT "
        "is the first chunk with content, at the client, including any time queued in the "
        f"gateway; a client timeout ({settings.timeout_s:g} s) or connection error counts as "
        "an error of the request's objective. `TTFT ≤ 1 s` is the critical objective's "
        "attainment: requests answered 200 with TTFT ≤ 1 s over all sent (errors are misses).",
        "",
        "Fairness: in the standard band during the 2x step (window "
        f"{window[0]:g}-{window[1]:g} s after the start of the ramp, the first "
        f"{settings.fairness_skip_s:g} s of the step left out), each tenant's *demand* is its "
        "standard requests sent in the window and its *served* count is its standard "
        "requests whose first token arrived in the window (whenever they were sent). The "
        "band's served total is split max-min fairly over the demands (water-filling: a tenant "
        "asking for less than an equal split gets all it asks for; the rest is split equally "
        "among the others) — that is the *fair* share. Jain's index is computed over the "
        "tenants' served / fair ratios: 1.0 when every tenant gets exactly its fair share, "
        "lower when some take more at others' expense. A tenant sending 10x more takes more "
        "than its fair share when its ratio is above 1.", "",
        "Verdicts:", "",
    ]
    parts += [f"- {line}" for line in verdicts(stats, fair, runs, settings)]
    parts += ["", slo_line(runs), "", engine_line(runs), ""]
    parts += ["### Per load step and objective", "",
              machine.markdown_table(CLASS_HEAD, class_rows(stats)), ""]
    parts += ["### Fairness in the saturated standard band (2x)", "",
              machine.markdown_table(FAIR_HEAD, fairness_rows(fair)), ""]
    parts += ["### Gateway process", "",
              "RSS from `/proc/<pid>/status` (start: before the ramp; peak: sampled every "
              f"{settings.sample_every_s:g} s; end: after the drain); queued requests from "
              "`inferlane_flow_queue_requests` by priority (peak of the samples, at the end "
              "of the 2x step, after the drain); max waiting on a replica: the replicas' "
              "`vllm:num_requests_waiting`, sampled likewise; gateway CPU over ramp + drain "
              "(1.0 = one core); background CPU = processes this benchmark did not start.", "",
              machine.markdown_table(GATEWAY_HEAD, gateway_rows(runs)), ""]
    parts += [f"Versions: {', '.join(f'{k} {v}' for k, v in env.versions.items())}. "
              f"Machine: {env.cpu_model}, {env.cpus} CPUs, {env.memory}, kernel {env.kernel}, "
              f"Python {env.python}; {env.layout}.", ""]
    return "\n".join(parts)

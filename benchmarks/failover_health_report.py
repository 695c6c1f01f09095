"""Verdicts, notes and the Markdown section of the health-check failover benchmark.

The numbers come from ``failover_health_analysis``; this module words them. Notes that explain
a mechanism are printed only when the run shows it (e.g. a kill outlier detection never
ejected while another replica was still ejected).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import failover_health_analysis as fa
import failover_health_setup as setup
import machine

if TYPE_CHECKING:
    from failover_health import ScenarioRun, Settings

HEADING = "## Health checks under replica kills (issue 6)"


def monitor_bound(scenario: setup.Scenario, settings: Settings,
                  timing: setup.MonitorTiming = setup.TIMING) -> float:
    """The slowest a monitor should take: the first failing probe up to one interval (+10 %
    jitter) after the kill, ``consecutiveDown - 1`` more intervals, an agent's report interval
    (regions other than the gateway), then the health poll."""
    interval = max(timing.http_interval_s, timing.inference_interval_s
                   if scenario.monitor == "group" else 0.0) * 1.1
    report = settings.agent_report_interval_s if scenario.monitor == "group" else 0.0
    return interval * timing.consecutive_down + report + settings.poll_interval_s


def _ejected_elsewhere(run: ScenarioRun, kill: fa.Kill) -> list[str]:
    """Endpoints the last poll before ``kill`` showed ejected (other than the killed one)."""
    before = [s for s in run.samples if s.at <= kill.killed and s.endpoint != kill.endpoint]
    if not before:
        return []
    last = max(s.at for s in before)
    return [s.endpoint for s in before if s.at == last and s.ejected]


def _ejected_at_end(run: ScenarioRun, endpoint: str) -> bool:
    mine = [s for s in run.samples if s.endpoint == endpoint]
    return bool(mine) and max(mine, key=lambda s: s.at).ejected


def _hit_share(run: ScenarioRun, kill: fa.Kill, detected: float | None) -> float:
    """Of the requests sent between the kill and the client-view detection, the share whose
    first attempt went to the dead replica."""
    if detected is None or math.isnan(detected) or detected < 0.2:
        return math.nan
    end = kill.killed + detected
    sent = [a for a in run.answers if kill.killed <= a.sent <= end]
    return len([a for a in sent if fa.is_hit(a, kill.endpoint)]) / len(sent) if sent else math.nan


def verdicts(summaries: Sequence[fa.ScenarioSummary], runs: Sequence[ScenarioRun],
             settings: Settings) -> list[str]:
    lines = []
    for summary, run in zip(summaries, runs, strict=True):
        scenario = setup.SCENARIOS[summary.scenario]
        errors = ", ".join(f"{k} x{v}" for k, v in sorted(summary.errors_by_kind.items()))
        lines.append(f"{summary.scenario}: client errors {summary.client_errors} of "
                     f"{summary.requests} — target 0 "
                     + ("**met**" if summary.client_errors == 0 else f"**missed** ({errors})")
                     + "; hits after the verdict view's detection "
                     f"{summary.post_detection_hits} — target 0 "
                     + ("**met**." if summary.post_detection_hits == 0 else "**missed**."))
        if scenario.monitor:
            bound = monitor_bound(scenario, settings)
            worst = fa.worst([k.detection_verdict for k in summary.kills])
            met = worst is not None and not math.isnan(worst) and worst <= bound
            lines.append(f"{summary.scenario}: slowest verdict-view detection "
                         f"{fa.seconds(worst)} s; the monitors' own bound {bound:.2f} s "
                         "(interval +10 % jitter x consecutiveDown"
                         + (" + agent report interval" if scenario.monitor == "group" else "")
                         + " + poll) — " + ("**met**." if met else "**missed**."))
        retries = ", ".join(f"{k} {v:.0f}" for k, v in sorted(run.retries.items()) if v)
        metric = summary.retries_metric
        lines.append(f"{summary.scenario}: `inferlane_retries_total` grew by "
                     + ("-" if math.isnan(metric) else f"{metric:.0f}")
                     + (f" ({retries})" if retries else "")
                     + f"; the clients saw {summary.retried} answers with attempts > 1.")
        lines += [f"{summary.scenario}: note: {note}" for note in run.notes]
    return lines


def notes(summaries: Sequence[fa.ScenarioSummary], runs: Sequence[ScenarioRun],
          settings: Settings) -> list[str]:
    """What the numbers mean, from what this run shows."""
    found: list[str] = []
    for summary, run in zip(summaries, runs, strict=True):
        scenario = setup.SCENARIOS[summary.scenario]
        kills = list(zip(run.kills, summary.kills, strict=True))
        if not scenario.monitor and scenario.passive is False \
                and settings.load_balancing == "default":
            client = fa.median([k.detection_client for k in summary.kills])
            found.append(
                f"`{summary.scenario}`: no verdict ever changes; the client view's detection "
                f"(median {fa.seconds(client)} s) is the scheduler's, not health's: the first "
                "refused connection drops the endpoint's last metrics scrape, and the default "
                "profile's saturation filter passes over an endpoint without a fresh scrape "
                "until one answers again. A profile without that filter (check with "
                "`--load-balancing round-robin --scenarios \"no health\"`) keeps sending its "
                "share of the requests to the dead replica until it is back.")
        for kill, result in kills:
            others = _ejected_elsewhere(run, kill)
            if scenario.passive and others and (
                    result.detection_verdict is None
                    or result.detection_verdict > fa.QUIET_WINDOW_S):
                found.append(
                    f"`{summary.scenario}`, replica {result.replica} (killed at "
                    f"{kill.killed:.1f} s): outlier detection did not eject it because "
                    f"{', '.join(others)} was still ejected: `maxEjectionPercent` 10 of "
                    f"{settings.replicas} endpoints allows 0.4, and the \"one may always be\" "
                    "exception was taken. That endpoint had been restarted and was healthy; "
                    + ("the monitor detected this kill instead."
                       if scenario.monitor else
                       "only the scheduler's stale-metrics filter (or luck) kept requests off "
                       "the dead one."))
            if scenario.passive and result.recovery_client is None \
                    and _ejected_at_end(run, kill.endpoint):
                found.append(
                    f"`{summary.scenario}`, replica {result.replica}: back after "
                    f"{kill.restarted - kill.killed:.0f} s but still ejected at the end of the "
                    "load — the first ejection lasts `baseEjectionTime` (30 s), longer than the "
                    "outage"
                    + (", and a healthy monitor verdict does not end an ejection (Envoy's "
                       "`successful_active_health_check_uneject_host`, true by default, "
                       "would)." if scenario.monitor else "."))
        if scenario.monitor and scenario.passive and summary.kills and all(
                r.detection_verdict is not None
                and r.detection_verdict < setup.TIMING.http_interval_s for r in summary.kills):
            found.append(
                f"`{summary.scenario}`: outlier detection took every killed replica out "
                "before the monitor's second failed probe could (as fast as `passive "
                "only`'s first kill), and the monitor's later recovery verdict ended the "
                "ejection — so the restarted replica came back (recovery) and the budget of one "
                "ejection was free again for the next kill, unlike in `passive only`.")
        slow = [r for r in summary.kills if scenario.monitor and scenario.passive
                and r.recovery_client is not None and r.recovery_verdict is not None
                and r.recovery_client - r.recovery_verdict > 0.5]
        if slow:
            gaps = ", ".join(f"{r.recovery_client - r.recovery_verdict:.1f} s" for r in slow)
            found.append(
                f"`{summary.scenario}`: the monitor's recovery ended the ejection (the verdict "
                "view's recovery), but the first request came "
                f"{gaps} later (`single monitor`: within a poll or two). Both slow starts "
                "apply at once — the outlier detector's from the uneject and the monitor's from "
                "the recovery, multiplied in `HealthTracker._view` — so the share starts at "
                "10 % x 10 % = 1 % (docs/health.md says 10 %) and is 30 % halfway through "
                "`slowStart` instead of 55 %.")
    shares = [(summary.scenario, result.replica, share)
              for summary, run in zip(summaries, runs, strict=True)
              for kill, result in zip(run.kills, summary.kills, strict=True)
              if not math.isnan(share := _hit_share(run, kill, result.detection_client))]
    if shares:
        name, replica, top = max(shares, key=lambda item: item[2])
        low = min(share for _, _, share in shares)
        unseen = sum(1 for s in summaries for k in s.kills if k.hits == 0)
        found.append(
            "Hits (and so retried requests) differ between scenarios with similar detection "
            "times because of the scheduler, not health: between the kill and its detection the "
            f"share of first attempts that went to the dead replica ranged from {low:.0%} to "
            f"{top:.0%} (`{name}`, replica {replica}; a fair share is "
            f"{1 / settings.replicas:.0%}). The default profile scores a dead replica by its "
            "last good scrape (kept until stale) and the gateway's own in-flight count for it, "
            "which drops to 0 as its attempts fail at once: when the kept scrape looked idle, "
            "it won most picks"
            + (f"; when it looked busy, it got none (`no hits`, {unseen} kills here)."
               if unseen else "."))
    found.append(
        "Every hit cost a refused connection on loopback (about a millisecond) and the free "
        "connect retry to another replica, so clients saw no errors; requests in flight on the "
        "replica when it died end before any response byte and are retried the same way. A "
        "host that vanishes without refusing (no RST) would cost each hit up to "
        "`--connect-timeout` (5 s) instead: the hits column is what health saves then.")
    return found


def markdown(summaries: Sequence[fa.ScenarioSummary], runs: Sequence[ScenarioRun],
             settings: Settings, env: machine.Environment) -> str:
    timing = setup.TIMING
    load_lines = [f"`{r.scenario}` {r.background_cpu:.2f} CPU (loadavg after {r.loadavg})"
                  for r in runs if not math.isnan(r.background_cpu)]
    profile = ("default scheduling profile" if settings.load_balancing == "default"
               else f"`{settings.load_balancing}` load balancing")
    parts = [
        HEADING, "",
        "Generated by `benchmarks/failover_health.py`; numbers are not edited by hand.", "",
        f"- Command: `{env.command}`",
        f"- Date: {env.date} (start; the run took {env.duration})",
        f"- Machine: {env.cpu_model}, {env.cpus} CPUs (`nproc`), {env.memory} RAM, Linux "
        f"{env.kernel}, Python {env.python} (`python -V`)",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in env.versions.items())}", "",
        f"Setup: one InferencePool of {settings.replicas} `inferlane sim` replicas (one process "
        f"each, `--time-scale {settings.time_scale:g}`, fixed ports). Per scenario a fresh "
        f"`inferlane serve` ({profile}, no TrafficPolicy: the connect retry to another "
        f"replica is the only retry) gets {settings.rate:g} non-streamed chat completions/s "
        f"(`max_tokens: {settings.max_tokens}`) from {settings.clients} paced client tasks for "
        f"{settings.duration_s:g} s, while the same schedule `{settings.schedule}` "
        "(replica:kill-restore, seconds) SIGKILLs replicas by PID and starts a fresh process "
        "on the same port. `GET /admin/health` is polled every "
        f"{settings.poll_interval_s * 1000:.0f} ms. Scenarios run one after the other in the "
        "same run against the same replicas:", "",
    ]
    parts += [f"- `{s.name}`: {s.description}." for s in setup.SCENARIOS.values()
              if s.name in settings.scenarios]
    parts += [
        f"- Monitors: http every {timing.http_interval_s:g} s (timeout "
        f"{timing.http_timeout_s:g} s), inference (a 2-token chat completion) every "
        f"{timing.inference_interval_s:g} s (timeout {timing.inference_timeout_s:g} s), both "
        f"consecutiveDown {timing.consecutive_down} / consecutiveUp {timing.consecutive_up}; in "
        "the group the http member votes and the inference member is mustBeHealthy (as in "
        "`examples/health.yaml`), so the http member alone cannot take an endpoint out (1 of "
        "2 voting members is a tie); probe agents report every "
        f"{settings.agent_report_interval_s:g} s; slowStart and the rest at their defaults.",
        "",
        machine.markdown_table(fa.HEAD, [fa.row(s) for s in summaries]), "",
        "### Per kill", "",
        machine.markdown_table(fa.KILL_HEAD, [r for s in summaries for r in fa.kill_rows(s)]),
        "",
        "### How the numbers are made", "",
        "- *Hit*: a request sent while a replica was down (from the kill until the fresh "
        "process answered `/health`, or the next kill if that came first) that took more "
        "than one attempt (`x-inferlane-attempts` > 1: its first attempt met the refused "
        "connection and the connect retry went to "
        "another replica) or failed naming the dead replica in `x-inferlane-endpoint`. Nothing "
        "else fails in this benchmark, so an extra attempt during an outage is the dead "
        "replica's (outages never overlap).",
        "- *Detection, client view*: send time of the outage's last hit minus the kill time; "
        f"`never` when hits went on until less than {fa.QUIET_WINDOW_S:g} s before the fresh "
        "process answered `/health` (or the next kill), "
        "`no hits` when no request went there at all. *Verdict view*: the first "
        "`/admin/health` answer after the kill showing the endpoint not routable (verdict "
        "`unhealthy`, or ejected), minus the kill time. Medians and maxima are over the kills.",
        "- *Post-detect hits*: hits sent after the verdict view's detection (should be 0).",
        "- *Retried*: answers with `x-inferlane-attempts` > 1 over the whole scenario (also "
        "requests in flight on a replica when it died); in brackets the growth of "
        "`inferlane_retries_total` over the same time.",
        "- *Recovery*: from the fresh replica's first `/health` answer (its own start-up, about "
        "a second here, is the `start-up` column) to the send time of the first request it "
        "served (client view; the table's median) and to the first poll showing it routable "
        "(verdict view); `not in run` when that did not happen before its next kill or the end "
        "of the load.", "",
        "### Verdicts", "",
    ]
    parts += [f"- {line}" for line in verdicts(summaries, runs, settings)]
    parts += ["", "### What the numbers mean", ""]
    parts += [f"- {line}" for line in notes(summaries, runs, settings)]
    parts += ["- One run with two kills per scenario: medians of two, and a few tenths of a "
              "second between scenarios is probe phase and jitter, not a ranking.",
              "", "Machine load: a shared 2-core VM that other sessions use at the same time; "
              "CPU used by processes this benchmark did not start, over each scenario's load: "
              + "; ".join(load_lines) + ".", ""]
    return "\n".join(parts)

"""How fast does inferlane stop sending requests to a replica that died, and take it back? (health)

    python benchmarks/failover_health.py [--quick] [--scenarios "no health,passive only,..."]
                                         [--schedule 1:5-15,2:20-30] [--duration 35]
                                         [--rate 60] [--json PATH] [--out docs/benchmarks.md]

One run starts a pool of N ``inferlane sim`` replicas (one process each, fixed ports) and, per
scenario, a fresh ``inferlane serve`` in front of them (plus two ``inferlane probe`` agents for
the monitor group). Each scenario gets the same bounded load (``--rate`` non-streamed chat
completions per second from a few paced client tasks, at most ``--duration`` seconds and a
fixed number of requests) while the same schedule SIGKILLs replicas by PID and restarts them on
their port. A poller reads ``GET /admin/health`` every 50 ms meanwhile. Scenarios
(``failover_health_setup.SCENARIOS``): ``no health``, ``passive only``, ``single monitor``,
``monitor group`` (3 regions), ``monitor + passive``.

Per request the client records send time, status, ``x-inferlane-endpoint`` and
``x-inferlane-attempts``; ``failover_health_analysis`` turns the answers and polls into
detection (client view and verdict view), hits after detection, retries and recovery, and
``failover_health_report`` into the tables and the Markdown section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

# benchmarks/ is a folder of scripts, not a package.
import failover_health_analysis as fa
import failover_health_report as report
import failover_health_setup as setup
import machine
import peers

console = machine.console
RESULTS_DIR = peers.BENCH_DIR / "results"


@dataclass(frozen=True, slots=True)
class Settings:
    replicas: int = 4
    schedule: str = "1:5-15,2:20-30"  # replica:kill-restore, seconds since the load began
    duration_s: float = 35.0
    rate: float = 60.0  # requests/s, all clients together
    clients: int = 6  # paced client tasks, each sequential
    max_tokens: int = 16
    time_scale: float = 0.25  # engine time x 0.25: a 16-token answer takes ~40 ms
    timeout_s: float = 10.0  # per request, at the client
    poll_interval_s: float = 0.05  # GET /admin/health
    agent_report_interval_s: float = 0.25
    warmup_limit_s: float = 20.0  # wait at most this for every endpoint to be healthy
    load_balancing: str = "default"  # the pool's inferlane.dev/load-balancing
    scenarios: tuple[str, ...] = setup.DEFAULT_SCENARIOS

    @property
    def max_requests_per_client(self) -> int:
        """The count bound of each client's loop (besides ``duration_s``)."""
        return math.ceil(self.rate / self.clients * self.duration_s * 1.2) + 10


# The gap between a restore and the next kill leaves time for the fresh replica's start-up.
QUICK = Settings(schedule="1:2-5,2:7-10", duration_s=12.0)


@dataclass(slots=True)
class ScenarioRun:
    scenario: str
    answers: list[fa.Answer]
    samples: list[fa.HealthSample]
    kills: list[fa.Kill]
    end: float
    retries: dict[str, float]  # inferlane_retries_total delta by reason
    background_cpu: float
    loadavg: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> fa.ScenarioSummary:
        metric = sum(self.retries.values())  # 0 when the gateway never retried
        return fa.summarize(self.scenario, self.answers, self.samples, self.kills, self.end,
                            metric)


# --- load ---------------------------------------------------------------------------------------


async def send_one(session: aiohttp.ClientSession, url: str, body: bytes, timeout_s: float,
                   sent: float) -> fa.Answer:
    start = time.perf_counter()
    status, headers, error = 0, {}, ""
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url, data=body,
                                    headers={"Content-Type": "application/json"}) as response:
                status = response.status
                headers = {k.lower(): v for k, v in response.headers.items()}
                await response.read()
    except TimeoutError:
        error = "timeout"
    except (aiohttp.ClientConnectorError, ConnectionRefusedError):
        error = "connect"
    except (aiohttp.ClientError, OSError) as exc:
        error = type(exc).__name__
    if not error and status != 200:
        error = str(status)
    return fa.Answer(sent=sent, latency=time.perf_counter() - start, status=status,
                     endpoint=headers.get("x-inferlane-endpoint", ""),
                     attempts=int(headers.get("x-inferlane-attempts") or 1), error=error)


async def load(url: str, settings: Settings, origin: float, stop_at: float,
               session: aiohttp.ClientSession) -> list[fa.Answer]:
    """``settings.clients`` tasks, each sending at ``rate / clients`` per second (a late one
    sends at once but never bursts to catch up), until ``stop_at`` or their request bound."""
    answers: list[fa.Answer] = []
    interval = settings.clients / settings.rate

    async def client(index: int) -> None:
        next_at = origin + index / settings.rate
        for number in range(settings.max_requests_per_client):
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            now = time.perf_counter()
            if now >= stop_at:
                return
            # The unique part first: no shared prefix pulls a client to one replica.
            body = orjson.dumps({"model": setup.MODEL, "max_tokens": settings.max_tokens,
                                 "messages": [{"role": "user", "content":
                                               f"{number} {index}: how is the fleet doing?"}]})
            answers.append(await send_one(session, url, body, settings.timeout_s, now - origin))
            next_at = max(next_at + interval, time.perf_counter() - interval)

    await asyncio.gather(*(client(i) for i in range(settings.clients)))
    return answers


async def poll_health(session: aiohttp.ClientSession, base: str, origin: float, stop_at: float,
                      interval_s: float, notes: list[str]) -> list[fa.HealthSample]:
    """``GET /admin/health`` every ``interval_s`` until ``stop_at``: the pool's endpoints."""
    samples: list[fa.HealthSample] = []
    failures = 0
    next_at = time.perf_counter()
    for _ in range(math.ceil((stop_at - next_at) / interval_s) + 1):
        if time.perf_counter() >= stop_at:
            break
        try:
            async with session.get(f"{base}/admin/health") as response:
                document = orjson.loads(await response.read())
            at = time.perf_counter() - origin
            for pool in document["pools"]:
                if pool["pool"] == setup.POOL_KEY:
                    samples.extend(fa.HealthSample(at, e["endpoint"], bool(e["routable"]),
                                                   str(e["verdict"]), bool(e["ejected"]))
                                   for e in pool["endpoints"])
        except (aiohttp.ClientError, TimeoutError, OSError, orjson.JSONDecodeError, KeyError,
                TypeError):
            failures += 1
        next_at += interval_s
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    if failures:
        notes.append(f"{failures} health polls failed")
    return samples


async def drive(fleet: setup.Fleet, outages: Sequence[fa.Outage], origin: float,
                session: aiohttp.ClientSession) -> list[fa.Kill]:
    """Kill and restore on schedule, each outage on its own (a slow start-up does not delay
    the next kill); the times as they happened (seconds since ``origin``), in kill order."""

    async def outage_of(outage: fa.Outage) -> fa.Kill:
        await asyncio.sleep(max(0.0, origin + outage.kill_at - time.perf_counter()))
        killed = fleet.kill(outage.replica) - origin
        await asyncio.sleep(max(0.0, origin + outage.restore_at - time.perf_counter()))
        restarted = time.perf_counter() - origin
        ready = await fleet.launch(session, outage.replica) - origin
        return fa.Kill(outage, fleet.address(outage.replica), killed, restarted, ready)

    by_replica: dict[int, list[fa.Outage]] = {}
    for outage in outages:
        by_replica.setdefault(outage.replica, []).append(outage)

    async def replica_outages(mine: list[fa.Outage]) -> list[fa.Kill]:
        return [await outage_of(outage) for outage in mine]  # one replica's: in turn

    done = await asyncio.gather(*(replica_outages(mine) for mine in by_replica.values()))
    return sorted((kill for kills in done for kill in kills), key=lambda k: k.killed)


# --- one scenario -------------------------------------------------------------------------------


async def retries_by_reason(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """inferlane_retries_total of the gateway, summed by reason."""
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "inferlane_retries_total":
                reason = sample.labels.get("reason", "")
                counts[reason] = counts.get(reason, 0.0) + float(sample.value)
    return counts


async def warm_up(session: aiohttp.ClientSession, base: str, scenario: setup.Scenario,
                  limit_s: float) -> str:
    """Wait until every endpoint is routable (and, with monitors, healthy in every region);
    "" when it got there, else what was still missing."""
    deadline = time.perf_counter() + limit_s
    missing = "no answer"
    while time.perf_counter() < deadline:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            async with session.get(f"{base}/admin/health") as response:
                document = orjson.loads(await response.read())
            pool = next(p for p in document["pools"] if p["pool"] == setup.POOL_KEY)
            waiting = [e["endpoint"] for e in pool["endpoints"]
                       if not e["routable"] or (scenario.monitor and (
                           e["verdict"] != "healthy" or any(
                               r["verdict"] != "healthy"
                               for m in e["members"] for r in m["regions"])))]
            if not waiting:
                return ""
            missing = f"not yet healthy: {', '.join(waiting)}"
        await asyncio.sleep(0.1)
    return missing


async def run_scenario(scenario: setup.Scenario, fleet: setup.Fleet, settings: Settings,
                       outages: Sequence[fa.Outage], log_dir: Path, token_file: Path
                       ) -> ScenarioRun:
    notes: list[str] = []
    slug = scenario.name.replace(" + ", "-").replace(" ", "-")
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as admin:
        for index in range(settings.replicas):  # every replica up before the next scenario
            if not fleet.alive(index):
                await fleet.launch(admin, index)
        await asyncio.to_thread(machine.wait_quiet)  # e.g. the last gateway's shutdown
        port = peers.free_port()
        config = setup.gateway_config(port, fleet.ports, scenario,
                                      load_balancing=settings.load_balancing)
        launch = await asyncio.to_thread(setup.start_gateway, log_dir, f"gateway-{slug}",
                                         config, port, token_file)
        agents: list[peers.ManagedProcess] = []
        try:
            agents += [setup.start_agent(log_dir, f"agent-{slug}-{region}", region, port,
                                         token_file, settings.agent_report_interval_s)
                       for region in setup.AGENT_REGIONS if region in scenario.regions]
            base = f"http://127.0.0.1:{port}"
            missing = await warm_up(admin, base, scenario, settings.warmup_limit_s)
            if missing:
                notes.append(f"started although {missing} after {settings.warmup_limit_s:g} s")
            retries_before = await retries_by_reason(admin, base)
            ours = [launch.process.pid, *(a.pid for a in agents), *fleet.pids()]
            before = machine.machine_snapshot(ours)
            connector = aiohttp.TCPConnector(limit=4 * settings.clients)
            async with aiohttp.ClientSession(
                    connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as clients:
                origin = time.perf_counter()
                stop_at = origin + settings.duration_s
                poller = asyncio.create_task(poll_health(admin, base, origin, stop_at,
                                                         settings.poll_interval_s, notes))
                driver = asyncio.create_task(drive(fleet, outages, origin, admin))
                answers = await load(f"{base}/v1/chat/completions", settings, origin, stop_at,
                                     clients)
                kills = await driver
                samples = await poller
            end = time.perf_counter() - origin
            ours = [launch.process.pid, *(a.pid for a in agents), *fleet.pids()]
            background = machine.background_cpu(before, machine.machine_snapshot(ours))
            after = await retries_by_reason(admin, base)
            retries = {k: v - retries_before.get(k, 0.0) for k, v in after.items()}
            notes += [f"{a.name} exited early: {a.log_tail(300)}" for a in agents
                      if not a.alive()]
        finally:  # each stopped once, by its PID (a second stop could meet a reused PID)
            for agent in agents:
                agent.stop()
            launch.process.stop()
    return ScenarioRun(scenario.name, answers, samples, kills, end, retries, background,
                       _loadavg(), notes)


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


async def run_all(settings: Settings, outages: Sequence[fa.Outage], log_dir: Path,
                  stack: contextlib.ExitStack) -> list[ScenarioRun]:
    sim_args = ("--time-scale", f"{settings.time_scale:g}")
    fleet = setup.Fleet(log_dir, settings.replicas, sim_args)
    stack.callback(fleet.stop)
    token_file = log_dir / "admin-token"
    token_file.write_text(secrets.token_hex(16))
    token_file.chmod(0o600)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for index in range(settings.replicas):
            await fleet.launch(session, index)
    runs = []
    for name in settings.scenarios:
        scenario = setup.SCENARIOS[name]
        console.print(f"[bold]{name}[/]: {settings.duration_s:g} s at {settings.rate:g} req/s, "
                      f"schedule {settings.schedule}")
        run = await run_scenario(scenario, fleet, settings, outages, log_dir, token_file)
        summary = run.summary()
        console.print(f"  {summary.requests} requests, {summary.client_errors} failed, "
                      f"{summary.retried} retried; background CPU {run.background_cpu:.2f}")
        runs.append(run)
    return runs


# --- main ---------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the children like Ctrl-C does


def parse_settings(parser: argparse.ArgumentParser, args: argparse.Namespace
                   ) -> tuple[Settings, tuple[fa.Outage, ...]]:
    settings = QUICK if args.quick else Settings()
    changes: dict[str, object] = {}
    for name in ("schedule", "rate", "clients", "load_balancing"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.duration is not None:
        changes["duration_s"] = args.duration
    if args.scenarios:
        changes["scenarios"] = tuple(s.strip() for s in args.scenarios.split(","))
    settings = replace(settings, **changes)  # type: ignore[arg-type]
    unknown = [s for s in settings.scenarios if s not in setup.SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(setup.SCENARIOS)}")
    if settings.rate <= 0 or settings.clients < 1:
        parser.error("--rate must be > 0 and --clients >= 1")
    try:
        outages = fa.parse_schedule(settings.schedule, settings.replicas, settings.duration_s)
    except ValueError as error:
        parser.error(str(error))
    return settings, outages


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="schedule 1:2-5,2:7-10 over 12 s per scenario (about 1.5 min)")
    parser.add_argument("--scenarios", help=f"comma-separated subset of: "
                                            f"{', '.join(setup.SCENARIOS)}")
    parser.add_argument("--schedule", help="REPLICA:KILL-RESTORE,... in seconds since the "
                                           "load began (default 1:5-15,2:20-30)")
    parser.add_argument("--duration", type=float, help="seconds of load per scenario")
    parser.add_argument("--rate", type=float, help="requests/s, all clients together")
    parser.add_argument("--clients", type=int, help="paced client tasks")
    parser.add_argument("--load-balancing", help="the pool's scheduling profile (default: "
                                                 "default; e.g. round-robin)")
    parser.add_argument("--json", type=Path, help="also write the summaries as JSON here")
    parser.add_argument("--out", type=Path, help="replace this benchmark's section of the file")
    parser.add_argument("--report-from", type=Path, metavar="DIR",
                        help="no run: report the run whose failover_health.json is in DIR")
    args = parser.parse_args(argv)
    if args.report_from:
        return report_from(args.report_from / "failover_health.json", args.out, args.json)
    settings, outages = parse_settings(parser, args)
    started = time.monotonic()
    # Taken now: the date the report states is the run's start (and the measured source).
    env = machine.environment("benchmarks/failover_health.py",
                              sys.argv[1:] if argv is None else argv,
                              machine.cpu_layout(False), {"inferlane": machine.inferlane_version()})
    log_dir = RESULTS_DIR / f"failover-health-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.ExitStack() as stack:
        try:
            runs = asyncio.run(run_all(settings, outages, log_dir, stack))
        except KeyboardInterrupt:
            console.print("[red]interrupted; stopping every process started here[/]")
            return 130
    env = replace(env, duration=f"{(time.monotonic() - started) / 60:.1f} min")
    (log_dir / "failover_health.json").write_bytes(orjson.dumps({
        "settings": asdict(settings), "environment": asdict(env),
        "runs": [asdict(run) for run in runs]},
        option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    show(runs, settings, env, args.out, args.json)
    console.print(f"raw results and logs: {log_dir}")
    return 0


def show(runs: Sequence[ScenarioRun], settings: Settings, env: machine.Environment,
         out: Path | None, json_path: Path | None) -> None:
    summaries = [run.summary() for run in runs]
    machine.print_table("detection and recovery per scenario (same schedule, one run)",
                        fa.HEAD, [fa.row(s) for s in summaries])
    machine.print_table("per kill", fa.KILL_HEAD,
                        [r for s in summaries for r in fa.kill_rows(s)])
    for line in report.verdicts(summaries, runs, settings) + report.notes(summaries, runs,
                                                                          settings):
        console.print(line)
    if json_path:
        json_path.write_bytes(orjson.dumps([asdict(s) for s in summaries],
                                           option=orjson.OPT_INDENT_2))
        console.print(f"wrote {json_path}")
    if out:
        machine.write_markdown(out, report.HEADING,
                               report.markdown(summaries, runs, settings, env), env)
        console.print(f"wrote {out}")


def report_from(path: Path, out: Path | None, json_path: Path | None) -> int:
    """Rebuild the runs of an earlier ``failover_health.json`` and show them."""
    data = orjson.loads(path.read_bytes())
    raw = data["settings"]
    settings = Settings(**{**raw, "scenarios": tuple(raw["scenarios"])})
    runs = []
    for row in data["runs"]:
        kills = [fa.Kill(**{**k, "outage": fa.Outage(**k["outage"])}) for k in row["kills"]]
        runs.append(ScenarioRun(
            row["scenario"], [fa.Answer(**a) for a in row["answers"]],
            [fa.HealthSample(**s) for s in row["samples"]], kills, row["end"], row["retries"],
            math.nan if row["background_cpu"] is None else row["background_cpu"],
            row["loadavg"], row["notes"]))
    show(runs, settings, machine.Environment(**data["environment"]), out, json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

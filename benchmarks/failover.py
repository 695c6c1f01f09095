"""What does a failing primary pool cost clients when a fallback provider exists? (failover)

    python benchmarks/failover.py [--quick] [--targets direct,inferlane,...]
                                  [--out docs/benchmarks.md]

One run starts a primary pool of three ``inferlane sim`` replicas (one process each) and a
fourth ``inferlane sim`` process as the fallback provider, measures the provider directly
(``provider-direct``, the calibration of "added latency"), then drives every target in turn
through the same phases with a fixed number of concurrent clients (non-streamed chat
completions, every ``stream_every``-th request streamed):

1. ``healthy``;
2. ``r0 500``: replica 0 answers 500 to everything (``POST /sim/faults {"error_rate": 1}``);
3. ``+r1 429``: replica 1 answers 429 with ``Retry-After: 1`` as well;
4. ``pool down``: replica 2 is SIGKILLed: no replica of the pool answers sensibly;
5. ``recovered``: faults cleared and a fresh replica 2 started on the same port.

Targets: ``direct`` (the client round-robins over the three replicas itself: what the failures
cost without a gateway), ``inferlane`` (``inferlane serve``: the pool, a TrafficPolicy falling
back to the provider; no same-pool retry), ``inferlane-retry`` (the same plus the route rule's
``retry: {attempts: 1}``), ``litellm`` (LiteLLM proxy: the replicas as deployments,
``fallbacks`` to the provider, ``num_retries: 1``). Each gateway is a fresh process; the
replicas are reset (faults cleared, replica 2 alive) between targets.

Per request the client records the phase it was *sent* in, its status, latency (send to last
byte), attempts (``x-inferlane-attempts``; LiteLLM: 1 + ``x-litellm-attempted-retries`` +
``x-litellm-attempted-fallbacks``) and who answered (``x-inferlane-backend``;
``x-litellm-model-api-base``). ``failover_report.py`` makes the tables and verdicts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

# benchmarks/ is a folder of scripts, not a package.
import failover_report as report
import failover_targets as ft
import machine
import peers
import routing

console = machine.console
TARGETS = ("direct", "inferlane", "inferlane-retry", "litellm")
PHASES = ("healthy", "r0 500", "+r1 429", "pool down", "recovered")
CALIBRATION = "provider-direct"


@dataclass(frozen=True, slots=True)
class Settings:
    phase_s: float = 12.0  # wall seconds per phase
    concurrency: int = 8  # clients, each with one request in flight
    stream_every: int = 10  # every 10th request of a client streams
    max_tokens: int = 32
    # Engine time x 0.25: a 32-token answer takes ~0.1 s, so phases see hundreds of requests.
    time_scale: float = 0.25
    timeout_s: float = 30.0  # per request, at the client
    # A client whose request failed waits about one healthy request's time before the next, so
    # a target answering errors in a millisecond does not turn the closed loop into a spin.
    error_pause_s: float = 0.1
    max_requests_per_client: int = 20_000  # a bound on every load loop besides time
    retry_after_s: float = 1.0
    cooldown_s: float = 5.0
    budget_percent: float = 100.0
    budget_min_retries: int = 100
    litellm_retries: int = 1
    targets: tuple[str, ...] = TARGETS


QUICK = Settings(phase_s=3.0, targets=("inferlane",))


@dataclass(frozen=True, slots=True)
class Result:
    target: str
    phase: str
    stream: bool
    sent_at: float  # seconds since the target's first phase began
    latency: float  # seconds, send to last byte (or to the failure)
    status: int  # 0: no HTTP answer
    ok: bool
    error: str  # "" or a short kind: "500", "429", "connect", "timeout", "stream-error", ...
    attempts: int
    via_provider: bool  # answered by the fallback provider


@dataclass(slots=True)
class TargetRun:
    target: str
    results: list[Result]
    background_cpu: float
    target_cpu: float  # the gateway process, 1.0 = one core (nan for direct)
    loadavg: str
    notes: list[str]
    # inferlane's own counters at the end of the run (its /metrics), summed by label.
    gateway_counters: dict[str, float] = field(default_factory=dict)


# --- one request --------------------------------------------------------------------------------


def _request_body(client: int, number: int, stream: bool, max_tokens: int) -> bytes:
    body: dict[str, object] = {
        "model": ft.MODEL, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": f"client {client} request {number}: "
                                                 "summarise the failover test so far."}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


async def send_one(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                   body: bytes, stream: bool, timeout_s: float
                   ) -> tuple[int, bool, str, dict[str, str], float]:
    """(status, ok, error kind, response headers, latency) of one chat completion."""
    start = time.perf_counter()
    status = 0
    seen: dict[str, str] = {}
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url, data=body, headers={
                    "Content-Type": "application/json", **headers}) as response:
                status = response.status
                seen = {k.lower(): v for k, v in response.headers.items()}
                payload = await response.read()
        latency = time.perf_counter() - start
    except TimeoutError:
        return status, False, "timeout", seen, time.perf_counter() - start
    except (aiohttp.ClientConnectorError, ConnectionRefusedError):
        return status, False, "connect", seen, time.perf_counter() - start
    except (aiohttp.ClientError, OSError) as error:
        return status, False, type(error).__name__, seen, time.perf_counter() - start
    if status != 200:
        return status, False, str(status), seen, latency
    # A broken stream ends with an error event (the status line was already 200).
    if stream and (b'data: {"error"' in payload or b"data: [DONE]" not in payload):
        return status, False, "stream-error", seen, latency
    return status, True, "", seen, latency


# --- targets as the client sees them ------------------------------------------------------------


@dataclass(slots=True)
class ClientTarget:
    name: str
    urls: Sequence[str]  # round-robined (one unless ``direct``)
    headers: dict[str, str]
    provider_url: str
    _turn: int = 0

    def url(self) -> str:
        self._turn += 1
        return f"{self.urls[self._turn % len(self.urls)]}/v1/chat/completions"

    def attempts_and_provider(self, headers: dict[str, str]) -> tuple[int, bool]:
        if "x-inferlane-attempts" in headers:
            backend = headers.get("x-inferlane-backend", "")
            return int(headers["x-inferlane-attempts"]), backend.startswith("provider/")
        if "x-litellm-model-api-base" in headers or "x-litellm-attempted-retries" in headers:
            extra = sum(int(headers.get(name) or 0) for name in (
                "x-litellm-attempted-retries", "x-litellm-attempted-fallbacks"))
            base = headers.get("x-litellm-model-api-base") or ""
            return 1 + extra, base.startswith(self.provider_url)
        return 1, self.name == CALIBRATION


# --- the phases ---------------------------------------------------------------------------------


@dataclass(slots=True)
class PhaseState:
    index: int = 0

    def name(self, phases: Sequence[str]) -> str:
        return phases[self.index]


async def load(target: ClientTarget, settings: Settings, phases: Sequence[str],
               state: PhaseState, origin: float, stop_at: float,
               session: aiohttp.ClientSession) -> list[Result]:
    """``settings.concurrency`` closed-loop clients until ``stop_at`` (or their request bound)."""
    results: list[Result] = []

    async def client(index: int) -> None:
        for number in range(settings.max_requests_per_client):
            now = time.perf_counter()
            if now >= stop_at:
                return
            stream = number % settings.stream_every == settings.stream_every - 1
            phase = state.name(phases)
            status, ok, error, headers, latency = await send_one(
                session, target.url(), target.headers,
                _request_body(index, number, stream, settings.max_tokens), stream,
                settings.timeout_s)
            attempts, via_provider = target.attempts_and_provider(headers)
            results.append(Result(target.name, phase, stream, now - origin, latency, status,
                                  ok, error, attempts, via_provider))
            if not ok:
                await asyncio.sleep(settings.error_pause_s)

    await asyncio.gather(*(client(i) for i in range(settings.concurrency)))
    return results


async def drive_phases(primary: ft.Primary, settings: Settings, state: PhaseState,
                       origin: float, admin: aiohttp.ClientSession,
                       notes: list[str]) -> None:
    """Enter each phase at its start, then apply its change: a request sent in the few
    milliseconds a fault takes to apply counts in the new phase (it may still have found the
    old state), and ``recovered`` includes the ~1 s a fresh replica 2 takes to start."""
    actions: list[Callable[[], object]] = [
        lambda: None,
        lambda: ft.set_faults(admin, primary.urls[0], {"error_rate": 1.0}),
        lambda: ft.set_faults(admin, primary.urls[1], {
            "throttle_rate": 1.0, "throttle_retry_after_s": settings.retry_after_s}),
        lambda: primary.kill(2),
        lambda: _recover(primary, admin),
    ]
    for index, action in enumerate(actions):
        await asyncio.sleep(max(0.0, origin + index * settings.phase_s - time.perf_counter()))
        began = time.perf_counter()
        state.index = index
        outcome = action()
        if asyncio.iscoroutine(outcome):
            await outcome
        took = time.perf_counter() - began
        if took > 0.5:
            notes.append(f"switching to phase `{PHASES[index]}` took {took:.1f} s")


async def _recover(primary: ft.Primary, admin: aiohttp.ClientSession) -> None:
    await ft.set_faults(admin, primary.urls[0], {})
    await ft.set_faults(admin, primary.urls[1], {})
    await asyncio.to_thread(primary.start, 2)  # the fresh replica 2, on the same port


async def reset(primary: ft.Primary, admin: aiohttp.ClientSession) -> None:
    """Every replica alive and healthy, idle, before the next target."""
    for index, url in enumerate(primary.urls):
        if not primary.alive(index):
            await asyncio.to_thread(primary.start, index)
        await ft.set_faults(admin, url, {})
    await asyncio.sleep(1.0)


def _with_descendants(pids: Sequence[int]) -> list[int]:
    """``pids`` and every process below them (LiteLLM may run workers as children)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found = list(pids)
    for pid in found:  # grows while iterating: a breadth-first walk
        found.extend(child for child, parent in parents.items()
                     if parent == pid and child not in found)
    return found


def _cpu_seconds(pids: Sequence[int]) -> float:
    return sum(v for v in map(machine.process_cpu_seconds, pids) if not math.isnan(v))


async def gateway_counters(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """inferlane's retry, fallback and give-up counters, keyed "name{label=value,...}"."""
    wanted = ("inferlane_retries_total", "inferlane_fallbacks_total",
              "inferlane_retries_exhausted_total", "inferlane_backend_skipped_total")
    counters: dict[str, float] = {}
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with session.get(f"{url}/metrics") as response:
            text = await response.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in wanted:
                    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())
                                      if k in ("reason", "to_backend", "backend"))
                    key = f"{sample.name}{{{labels}}}"
                    counters[key] = counters.get(key, 0.0) + float(sample.value)
    return counters


async def run_target(target: ClientTarget, primary: ft.Primary, settings: Settings,
                     pids: Sequence[int], gateway_pid: int | None) -> TargetRun:
    notes: list[str] = []
    state = PhaseState()
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=4 * settings.concurrency),
            timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False) as session, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as admin:
        await reset(primary, admin)
        machine.wait_quiet()
        gateway = _with_descendants([gateway_pid]) if gateway_pid else []
        ours = [*pids, *primary.pids(), *gateway]
        before = machine.machine_snapshot(ours)
        cpu_before = _cpu_seconds(gateway)
        origin = time.perf_counter()
        stop_at = origin + len(PHASES) * settings.phase_s
        driver = asyncio.create_task(drive_phases(primary, settings, state, origin, admin,
                                                  notes))
        results = await load(target, settings, PHASES, state, origin, stop_at, session)
        await driver
        wall = time.perf_counter() - origin
        # Replicas killed and restarted in the run: their CPU is ours too, but a dead
        # process's seconds are gone from /proc, so this slightly overstates background.
        ours = [*pids, *primary.pids(), *gateway]
        background = machine.background_cpu(before, machine.machine_snapshot(ours))
        target_cpu = (_cpu_seconds(gateway) - cpu_before) / wall if gateway else math.nan
        counters = {}
        if target.name.startswith("inferlane"):
            counters = await gateway_counters(admin, target.urls[0])
    return TargetRun(target.name, results, background, target_cpu, _loadavg(), notes,
                     counters)


async def calibrate(provider_url: str, settings: Settings) -> TargetRun:
    """The provider alone at the same concurrency: what a fallback answer costs at least."""
    target = ClientTarget(CALIBRATION, [provider_url], {}, provider_url)
    state = PhaseState()
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=4 * settings.concurrency),
            timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False) as session:
        machine.wait_quiet()
        before = machine.machine_snapshot(())
        origin = time.perf_counter()
        results = await load(target, settings, (CALIBRATION,), state, origin,
                             origin + settings.phase_s, session)
        background = machine.background_cpu(before, machine.machine_snapshot(()))
    return TargetRun(CALIBRATION, results, background, float("nan"), _loadavg(), [])


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


# --- main ---------------------------------------------------------------------------------------


def sim_args(settings: Settings) -> list[str]:
    return ["--time-scale", f"{settings.time_scale:g}"]


async def run_all(log_dir: Path, stack: contextlib.ExitStack, settings: Settings
                  ) -> tuple[list[TargetRun], dict[str, str]]:
    primary = ft.Primary(log_dir, sim_args(settings))
    stack.callback(primary.stop)
    for index in range(len(primary.ports)):
        primary.start(index)
    provider_port = peers.free_port()
    provider = ft.start_sim(log_dir, "provider", provider_port, [*sim_args(settings),
                                                                 "--seed", "99"])
    stack.callback(provider.stop)
    provider_url = f"http://127.0.0.1:{provider_port}"
    versions = {"inferlane": machine.inferlane_version()}
    runs = [await calibrate(provider_url, settings)]
    console.print(f"[bold]{CALIBRATION}[/]: {len(runs[0].results)} requests")
    for name in settings.targets:
        gateway_pid: int | None = None
        launch: peers.Launch | None = None
        if name == "direct":
            target = ClientTarget(name, primary.urls, {}, provider_url)
        else:
            try:
                launch = start_target(name, log_dir, primary, provider_url, settings, stack,
                                      versions)
            except peers.PeerError as error:
                console.print(f"[red]{name} skipped[/]: {error}")
                runs.append(TargetRun(name, [], float("nan"), float("nan"), _loadavg(),
                                      [f"not run: {str(error)[:300]}"]))
                continue
            gateway_pid = launch.process.pid
            target = ClientTarget(name, [f"http://127.0.0.1:{launch.port}"], launch.headers,
                                  provider_url)
        console.print(f"[bold]{name}[/]: {len(PHASES)} phases x {settings.phase_s:g} s, "
                      f"{settings.concurrency} clients")
        run = await run_target(target, primary, settings, [provider.pid], gateway_pid)
        if launch is not None:
            launch.process.stop()
        failed = sum(1 for r in run.results if not r.ok)
        console.print(f"  {len(run.results)} requests, {failed} failed at the client; "
                      f"background CPU {run.background_cpu:.2f}")
        runs.append(run)
    return runs, versions


def start_target(name: str, log_dir: Path, primary: ft.Primary, provider_url: str,
                 settings: Settings, stack: contextlib.ExitStack,
                 versions: dict[str, str]) -> peers.Launch:
    if name in ("inferlane", "inferlane-retry"):
        gateway = ft.GatewaySettings(
            pool_retries=1 if name == "inferlane-retry" else 0,
            budget_percent=settings.budget_percent,
            budget_min_retries=settings.budget_min_retries, cooldown_s=settings.cooldown_s)
        launch = ft.start_inferlane(log_dir, name, primary, provider_url, gateway)
    elif name == "litellm":
        versions.update(peers.ensure_peers_venv(log_dir))
        closed = peers.ClosedPort()
        stack.callback(closed.close)
        launch = ft.start_litellm(log_dir, primary, provider_url, settings.litellm_retries,
                                  settings.cooldown_s, closed.port)
    else:
        raise peers.PeerError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    stack.callback(launch.process.stop)
    return launch


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the children like Ctrl-C does


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 s phases, inferlane only (about 15 s of load)")
    parser.add_argument("--targets", help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--phase-seconds", type=float, help="wall seconds per phase")
    parser.add_argument("--concurrency", type=int, help="clients with one request in flight")
    parser.add_argument("--out", type=Path, help="replace this benchmark's section of the file")
    parser.add_argument("--report-from", type=Path, metavar="DIR",
                        help="no run: print (and with --out write) the report of the run whose "
                             "failover.json is in DIR")
    args = parser.parse_args(argv)
    if args.report_from:
        return report_from(args.report_from / "failover.json", args.out)
    settings = QUICK if args.quick else Settings()
    if args.targets:
        settings = replace(settings, targets=tuple(t.strip() for t in args.targets.split(",")))
    if args.phase_seconds:
        settings = replace(settings, phase_s=args.phase_seconds)
    if args.concurrency:
        settings = replace(settings, concurrency=args.concurrency)
    unknown = set(settings.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {', '.join(sorted(unknown))}; known: {', '.join(TARGETS)}")
    started = time.monotonic()
    log_dir = routing.RESULTS_DIR / f"failover-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.ExitStack() as stack:
        try:
            runs, versions = asyncio.run(run_all(log_dir, stack, settings))
        except KeyboardInterrupt:
            console.print("[red]interrupted; stopping every process started here[/]")
            return 130
    env = machine.environment("benchmarks/failover.py", sys.argv[1:] if argv is None else argv,
                              machine.cpu_layout(False), versions)
    env = replace(env, duration=f"{(time.monotonic() - started) / 60:.1f} min")
    (log_dir / "failover.json").write_bytes(orjson.dumps({
        "settings": asdict(settings), "phases": PHASES, "environment": asdict(env),
        "runs": [{"target": r.target, "background_cpu": r.background_cpu,
                  "target_cpu": r.target_cpu, "loadavg": r.loadavg, "notes": r.notes,
                  "gateway_counters": r.gateway_counters} for r in runs],
        "results": [asdict(result) for run in runs for result in run.results],
    }, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    show(runs, settings, env, args.out)
    console.print(f"raw results and logs: {log_dir}")
    return 0


def show(runs: Sequence[TargetRun], settings: Settings, env: machine.Environment,
         out: Path | None) -> None:
    """Print the tables and verdicts; with ``out``, write the Markdown section there."""
    summary = report.summarize(runs, PHASES, CALIBRATION)
    machine.print_table("errors and fallbacks per phase (phase = when sent)",
                        report.PHASE_HEAD, report.phase_rows(summary))
    machine.print_table("added latency of requests that took a retry or fallback",
                        report.ADDED_HEAD, report.added_rows(summary))
    for line in report.verdicts(summary, settings) + report.counter_lines(runs):
        console.print(line)
    if out:
        machine.write_markdown(out, report.HEADING,
                               report.markdown(summary, runs, env, settings), env)
        console.print(f"wrote {out}")


def report_from(path: Path, out: Path | None) -> int:
    """Rebuild the runs of an earlier ``failover.json`` and show them."""
    data = orjson.loads(path.read_bytes())
    if "environment" not in data:
        console.print(f"[red]{path} predates the saved environment; run the benchmark again[/]")
        return 2
    settings = Settings(**{**data["settings"], "targets": tuple(data["settings"]["targets"])})
    env = machine.Environment(**data["environment"])
    results = [Result(**row) for row in data["results"]]
    def number(value: float | None) -> float:  # orjson writes NaN as null
        return math.nan if value is None else value

    runs = [TargetRun(row["target"], [r for r in results if r.target == row["target"]],
                      number(row["background_cpu"]), number(row["target_cpu"]), row["loadavg"],
                      row["notes"], row["gateway_counters"]) for row in data["runs"]]
    show(runs, settings, env, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

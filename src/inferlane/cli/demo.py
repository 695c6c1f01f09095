"""``inferlane demo``: the embedded default — a simulated fleet behind the gateway.

Loads the bundled ``examples/default.yaml``, starts one simulated vLLM-compatible replica per
ModelServer in it (its first listed model is the base model, the others are LoRA adapters),
starts the gateway on the config's listener, then:

- with ``--duration S``: runs a mixed workload for S seconds, prints a summary, exits 0
  (1 if any request failed);
- without: runs a short warm-up workload, prints the summary, then keeps serving and prints the
  URL to point an OpenAI client at, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import sys
import time

from rich.console import Console

from inferlane.cli.health import render as render_health
from inferlane.cli.runtime import run as run_async
from inferlane.cli.runtime import wait_for_shutdown_signal
from inferlane.cli.serve import Assembly, add_tuning_arguments
from inferlane.config.loader import ConfigBundle, load_config_text
from inferlane.demo.summary import render
from inferlane.demo.workload import run_workload
from inferlane.errors import ConfigError
from inferlane.sim.fleet import Fleet, SimOptions, start_fleet

WARM_UP_SECONDS = 5.0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=None,
                        help="run the workload for S seconds, print the summary and exit")
    parser.add_argument("--config", default=None,
                        help="config to demo instead of the bundled default")
    parser.add_argument("--port", type=int, default=None,
                        help="gateway port (default: the config's listener port, 8080)")
    parser.add_argument("--sim-port", type=int, default=None,
                        help="first simulator port; replica i listens on it + i "
                             "(default: the ModelServer addresses in the config)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="concurrent clients of the workload (default: 8)")
    add_tuning_arguments(parser)
    parser.set_defaults(run=run)


def default_config_text() -> str:
    return (importlib.resources.files("inferlane") / "examples" / "default.yaml").read_text()


def run(args: argparse.Namespace) -> int:
    try:
        if args.config is None:
            bundle = load_config_text(default_config_text(), source="<bundled default.yaml>")
        else:
            with open(args.config, encoding="utf-8") as file:
                bundle = load_config_text(file.read(), source=args.config)
    except (ConfigError, OSError) as error:
        print(error, file=sys.stderr)
        return 2
    if args.sim_port is not None:
        bundle = _renumber_servers(bundle, args.sim_port)
    return run_async(_demo(args, bundle))


def _renumber_servers(bundle: ConfigBundle, first_port: int) -> ConfigBundle:
    servers = tuple(
        server.model_copy(update={"spec": server.spec.model_copy(
            update={"address": f"{server.spec.host}:{first_port + index}"})})
        for index, server in enumerate(bundle.model_servers)
    )
    # Everything else as it was (picker configs, objectives, policies, providers ...).
    return dataclasses.replace(bundle, model_servers=servers)


async def _start_fleets(bundle: ConfigBundle) -> list[Fleet]:
    fleets: list[Fleet] = []
    try:
        for server in bundle.model_servers:
            models = server.spec.models or ["sim-model"]
            options = SimOptions(models=(models[0],),
                                 loras_by_model={models[0]: tuple(models[1:])})
            port = server.spec.port or 8000
            fleets.append(await start_fleet(1, port, host=server.spec.host,
                                            models=(models[0],), options=options))
    except BaseException:
        for fleet in fleets:
            await fleet.stop()
        raise
    return fleets


async def _demo(args: argparse.Namespace, bundle: ConfigBundle) -> int:
    # Piped output (CI logs, `make demo | tee`) gets a readable width instead of 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 132)
    assembly = Assembly(args)
    snapshot = assembly.build(bundle)
    try:
        fleets = await _start_fleets(bundle)
    except OSError as error:
        console.print(f"[red]cannot start the simulated fleet:[/red] {error} "
                      "(use --sim-port to pick other ports)")
        return 2
    server = assembly.make_server(snapshot, host="127.0.0.1", port=args.port)
    try:
        try:
            await server.start()
        except OSError as error:
            console.print(f"[red]cannot start the gateway:[/red] {error} "
                          "(use --port to pick another port)")
            return 2
        port = next(iter(server.ports.values()))
        base_url = f"http://127.0.0.1:{port}"
        replicas = sum(len(fleet.replicas) for fleet in fleets)
        console.print(f"[bold]inferlane[/bold] gateway on {base_url} in front of {replicas} "
                      f"simulated replicas; models: {', '.join(snapshot.models)}")
        duration = args.duration if args.duration is not None else WARM_UP_SECONDS
        started = time.monotonic()
        results = await run_workload(base_url, duration=duration, concurrency=args.concurrency)
        render(results, time.monotonic() - started, console)
        console.print(render_health(server.state.health.tracker.report(time.monotonic())))
        if args.duration is not None:
            return 0 if all(r.status == 200 for r in results) else 1
        console.print(
            f"\nServing until Ctrl-C. Point an OpenAI client at it:\n"
            f"  OPENAI_BASE_URL={base_url}/v1 OPENAI_API_KEY=unused python -c \"import openai; "
            f"print(openai.OpenAI().chat.completions.create(model='llama-3-8b', "
            f"messages=[{{'role': 'user', 'content': 'hi'}}]).choices[0].message.content)\"\n"
            f"  curl {base_url}/v1/models    ·    curl {base_url}/metrics",
            soft_wrap=True,  # keep the command copy-pasteable
        )
        await wait_for_shutdown_signal()
        return 0
    finally:
        await server.stop()
        for fleet in fleets:
            await fleet.stop()

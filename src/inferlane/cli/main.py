"""``inferlane`` command line: serve, validate, sim, demo, health, probe, ...

Each subcommand lives in its own module; this one only parses arguments and dispatches.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from inferlane import __version__


def _parser() -> argparse.ArgumentParser:
    from inferlane.cli import bench, demo, health, l4, probe, serve, shadow_report, validate
    from inferlane.sim import command as sim

    parser = argparse.ArgumentParser(
        prog="inferlane",
        description="A model-aware, health-aware gateway for LLM inference.",
    )
    parser.add_argument("--version", action="version", version=f"inferlane {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.configure_parser(commands.add_parser(
        "serve", help="run the gateway", description="Run the gateway from a config file."))
    validate.configure_parser(commands.add_parser(
        "validate", help="check a config file",
        description="Check a config file; list every problem as kind/name: field: message."))
    sim.configure_parser(commands.add_parser(
        "sim", help="run simulated vLLM-compatible model servers",
        description="Run N simulated vLLM-compatible model servers on consecutive ports."))
    bench.configure_parser(commands.add_parser(
        "bench", help="compare load-balancing modes on a simulated fleet",
        description="Run the same seeded workload through each load-balancing mode on a fresh "
                    "simulated fleet and print TTFT, latency, throughput and cache hits."))
    demo.configure_parser(commands.add_parser(
        "demo", help="run a simulated fleet behind the gateway and show what it does",
        description="Start a simulated fleet and the gateway with the bundled example config."))
    shadow_report.configure_parser(commands.add_parser(
        "shadow-report", help="compare shadow (mirror) backends with their primaries",
        description="Read a running gateway's shadow statistics (GET /admin/shadow) and print "
                    "one row per (primary model, shadow model) pair."))
    health.configure_parser(commands.add_parser(
        "health", help="show a running gateway's health verdicts",
        description="Read a running gateway's health report (GET /admin/health) and print "
                    "pool, endpoint, monitor and region verdicts as a table."))
    l4.configure_parser(commands.add_parser(
        "l4", help="TCP/UDP load balancing: `inferlane l4 status`",
        description="Inspect a running gateway's TCP/UDP listeners (GET /admin/l4)."))
    probe.configure_parser(commands.add_parser(
        "probe", help="run a probe agent for another region",
        description="Run the monitors a gateway assigns to REGION from this host and report "
                    "the results to the gateway (needs the gateway's admin token)."))
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiohttp logs each client disconnect at error level; our own metrics count those.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())

"""``inferlane probe --region NAME --gateway URL``: a probe agent for another vantage point."""

from __future__ import annotations

import argparse
import asyncio
import sys

from inferlane.cli.runtime import run as run_async
from inferlane.cli.runtime import wait_for_shutdown_signal
from inferlane.cli.serve import ADMIN_TOKEN_ENV, read_token
from inferlane.health.agent import AgentOptions, AgentStopped, ProbeAgent


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", required=True,
                        help="the region this agent probes from (a name in the regions of a "
                             "HealthCheckPolicy)")
    parser.add_argument("--gateway", required=True,
                        help="base URL of the gateway to report to, e.g. http://10.0.0.1:8080")
    parser.add_argument("--token-file", default=None,
                        help="file holding the gateway's admin token "
                             f"(default: ${ADMIN_TOKEN_ENV})")
    parser.add_argument("--report-interval", type=float, default=1.0,
                        help="seconds between reports to the gateway (default: 1)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    token = read_token(args.token_file, ADMIN_TOKEN_ENV)
    if token is None:
        print(f"inferlane probe: no admin token: pass --token-file or set ${ADMIN_TOKEN_ENV}",
              file=sys.stderr)
        return 2
    if args.report_interval <= 0:
        print("inferlane probe: --report-interval must be > 0", file=sys.stderr)
        return 2
    agent = ProbeAgent(AgentOptions(gateway=args.gateway, region=args.region, token=token,
                                    report_interval=args.report_interval))
    return run_async(_run(agent))


async def _run(agent: ProbeAgent) -> int:
    task = asyncio.get_running_loop().create_task(agent.run())
    stop = asyncio.get_running_loop().create_task(wait_for_shutdown_signal())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stop):
        pending.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return 0
    except AgentStopped as error:
        print(f"inferlane probe: {error}", file=sys.stderr)
        return 2
    return 0

"""``inferlane serve --config FILE``: run the gateway until SIGINT/SIGTERM, reloading on change."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from inferlane.cli.runtime import run as run_async
from inferlane.cli.runtime import wait_for_shutdown_signal
from inferlane.config.build import DEFAULT_MAX_BODY_BYTES, build_snapshot
from inferlane.config.loader import ConfigBundle, load_config_file
from inferlane.config.reload import ConfigReloader
from inferlane.dataplane.server import GatewayServer, ServerOptions
from inferlane.dataplane.upstream import UpstreamOptions
from inferlane.endpoints import EndpointStore
from inferlane.errors import ConfigError
from inferlane.health.settings import GATEWAY_REGION
from inferlane.routing.router import GatewaySnapshot

log = logging.getLogger("inferlane")

ADMIN_TOKEN_ENV = "INFERLANE_ADMIN_TOKEN"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", required=True, help="multi-document YAML config")
    parser.add_argument("--port", type=int, default=None,
                        help="listen on this port instead of the first listener's")
    parser.add_argument("--host", default="0.0.0.0", help="bind address (default: 0.0.0.0)")
    add_tuning_arguments(parser)
    parser.set_defaults(run=run)


def add_tuning_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help="largest accepted request body (default: 10 MiB; larger → 413)")
    parser.add_argument("--connect-timeout", type=float, default=5.0,
                        help="seconds to connect to a model server (default: 5)")
    parser.add_argument("--read-timeout", type=float, default=300.0,
                        help="seconds a model server may stay silent mid-response (default: 300)")
    parser.add_argument("--reload-interval", type=float, default=1.0,
                        help="seconds between config file change checks (default: 1)")
    parser.add_argument("--scrape-interval", type=float, default=0.05,
                        help="seconds between model-server /metrics scrapes (default: 0.05; "
                             "0 turns scraping off)")
    parser.add_argument("--stale-after", type=float, default=2.0,
                        help="seconds after which an endpoint's metrics are stale and it counts "
                             "as saturated (default: 2)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--region", default=GATEWAY_REGION,
                        help="this gateway's health vantage point: it runs the monitors of "
                             f"HealthCheckPolicies listing it (default: {GATEWAY_REGION})")
    parser.add_argument("--admin-token-file", default=None,
                        help="file holding the token that probe agents and drain calls send "
                             f"(default: ${ADMIN_TOKEN_ENV}; unset: those calls are refused)")


def server_options(args: argparse.Namespace, *, host: str, port: int | None) -> ServerOptions:
    return ServerOptions(
        host=host,
        port_override=port,
        access_log=args.access_log,
        upstream=UpstreamOptions(
            connect_timeout=args.connect_timeout, read_timeout=args.read_timeout
        ),
        scrape_interval=args.scrape_interval,
        region=args.region,
        admin_token=read_token(args.admin_token_file, ADMIN_TOKEN_ENV),
    )


def read_token(path: str | None, env: str) -> str | None:
    """A secret from ``path`` (stripped), else from the environment variable ``env``."""
    if path is None:
        return os.environ.get(env, "").strip() or None
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as error:
        raise SystemExit(f"inferlane: cannot read the token file {path}: {error.strerror}") \
            from None
    if not token:
        raise SystemExit(f"inferlane: the token file {path} is empty")
    return token


class Assembly:
    """Builds snapshots and the server around one EndpointStore (what schedulers read)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self.store = EndpointStore(stale_after=args.stale_after)
        self.server: GatewayServer | None = None

    def build(self, bundle: ConfigBundle, generation: int = 1) -> GatewaySnapshot:
        previous = self.server.state.snapshot if self.server is not None else None
        return build_snapshot(
            bundle, generation=generation, max_body_bytes=self._args.max_body_bytes,
            states=self.store.states, previous=previous, stale_after=self._args.stale_after,
        )

    def make_server(self, snapshot: GatewaySnapshot, *, host: str,
                    port: int | None) -> GatewayServer:
        self.server = GatewayServer(
            snapshot, server_options(self._args, host=host, port=port), store=self.store
        )
        return self.server


def run(args: argparse.Namespace) -> int:
    assembly = Assembly(args)
    try:
        bundle = load_config_file(args.config)
        snapshot = assembly.build(bundle)
    except ConfigError as error:
        for issue in error.issues:
            print(issue, file=sys.stderr)
        return 2
    for warning in bundle.warnings:
        log.warning("%s", warning)
    return run_async(_serve(args, assembly, snapshot))


async def _serve(args: argparse.Namespace, assembly: Assembly, snapshot: GatewaySnapshot) -> int:
    server = assembly.make_server(snapshot, host=args.host, port=args.port)
    try:
        await server.start()
    except OSError as error:
        print(f"inferlane: cannot listen: {error}", file=sys.stderr)
        return 2
    reloader = ConfigReloader(
        args.config, assembly.build, server.apply, server.metrics,
        poll_interval=args.reload_interval,
    )
    reloader.start()
    ports = ", ".join(f"{name}={port}" for name, port in server.ports.items())
    log.info("inferlane serving (%s); config %s generation %d", ports, args.config,
             snapshot.generation)
    try:
        await wait_for_shutdown_signal()
        log.info("shutting down: finishing in-flight requests")
    finally:
        await reloader.stop()
        await server.stop()
    return 0

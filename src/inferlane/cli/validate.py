"""``inferlane validate FILE``: every problem as ``file:line: kind/name: field.path: message``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter

from inferlane.config.build import build_snapshot
from inferlane.config.loader import load_config_file
from inferlane.errors import ConfigError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="multi-document YAML config")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        bundle = load_config_file(args.file)
        # Provider keys are checked when the gateway starts, not here (CI has none).
        snapshot = build_snapshot(bundle, resolve_secrets=False)
    except ConfigError as error:
        for issue in error.issues:
            print(issue, file=sys.stderr)
        count = len(error.issues)
        print(f"{args.file}: invalid ({count} problem{'s' if count != 1 else ''})", file=sys.stderr)
        return 1
    for warning in bundle.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    kinds = Counter[str]()
    for field in dataclasses.fields(bundle):
        value = getattr(bundle, field.name)
        if field.name != "warnings" and isinstance(value, tuple):
            for resource in value:
                kinds[type(resource).__name__] += 1
    summary = ", ".join(f"{n} {kind}" for kind, n in kinds.items() if n)
    endpoints = sum(len(pool.endpoints) for pool in snapshot.pools.values())
    l4 = sum(1 for listener in snapshot.l4 if listener.routes)
    l4_note = f"{l4} TCP/UDP listeners; " if l4 else ""
    print(f"{args.file}: valid ({summary}; {endpoints} endpoints; {l4_note}"
          f"models: {', '.join(snapshot.models) or 'any'})")
    return 0

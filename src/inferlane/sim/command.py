"""``inferlane sim``: run a fleet of simulated vLLM replicas until SIGINT/SIGTERM.

Fault flags take ``VALUE`` (every replica) or ``REPLICA:VALUE`` (that replica only, on top of the
fleet-wide values) and may be repeated, e.g. ``--error-rate 0.01 --crash-after 2:100``. Each
replica also changes its faults at run time on ``POST /sim/faults`` (see ``server.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from inferlane.sim.engine import EngineConfig
from inferlane.sim.faults import FaultOptions
from inferlane.sim.fleet import DEFAULT_MODELS, SimOptions, start_fleet

_ENGINE = EngineConfig()
_OPTIONS = SimOptions()
_FAULT_FLAGS: dict[str, tuple[str, Callable[[str], float | int]]] = {
    "error_rate": ("--error-rate", float),
    "added_latency_ms": ("--added-latency-ms", float),
    "hang_rate": ("--hang-rate", float),
    "crash_after": ("--crash-after", int),
    "throttle_rate": ("--throttle-rate", float),
    "throttle_retry_after_s": ("--throttle-retry-after-s", float),
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``inferlane sim`` flags (vLLM's names where vLLM has the knob)."""
    parser.set_defaults(run=run)
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument("--replicas", type=int, default=1, help="number of replicas (default 1)")
    fleet.add_argument("--port", type=int, default=9000,
                       help="port of replica 0; replica i listens on PORT+i (0: ephemeral)")
    fleet.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    fleet.add_argument("--model", action="append", metavar="NAME",
                       help="base model name, repeatable: replica i serves model i %% count "
                            f"(default {DEFAULT_MODELS[0]})")
    fleet.add_argument("--lora", action="append", metavar="NAME[=MODEL]", default=[],
                       help="LoRA adapter served on every model, or only on MODEL; repeatable")
    fleet.add_argument("--seed", type=int, default=0, help="seed of outputs and faults")
    fleet.add_argument("--time-scale", type=float, default=_OPTIONS.time_scale,
                       help="multiply every simulated duration (0.1 runs ten times faster)")

    engine = parser.add_argument_group("engine capacity and timing")
    for name, help_text in (
        ("block_size", "tokens per KV block"),
        ("num_gpu_blocks", "KV cache size in blocks"),
        ("max_num_seqs", "most sequences in a batch"),
        ("max_num_batched_tokens", "token budget of one step (chunked prefill)"),
        ("max_model_len", "longest prompt + output"),
        ("max_loras", "LoRA adapter slots"),
    ):
        engine.add_argument("--" + name.replace("_", "-"), type=int,
                            default=getattr(_ENGINE, name),
                            help=f"{help_text} (default {getattr(_ENGINE, name)})")
    engine.add_argument("--prefix-cache-blocks", type=int, default=None,
                        help="prefix cache LRU size in blocks (default: num-gpu-blocks)")
    engine.add_argument("--no-prefix-caching", action="store_true",
                        help="disable prefix caching")
    for name, help_text in (
        ("decode_base_ms", "fixed cost of one step"),
        ("decode_per_seq_ms", "added step cost per sequence in the batch"),
        ("prefill_ms_per_token", "added step cost per uncached prompt token"),
        ("lora_load_ms", "added step cost per adapter loaded"),
    ):
        engine.add_argument("--" + name.replace("_", "-"), type=float,
                            default=getattr(_ENGINE, name),
                            help=f"{help_text} (default {getattr(_ENGINE, name)})")
    engine.add_argument("--min-output-tokens", type=int, default=_OPTIONS.min_output_tokens,
                        help="shortest output without max_tokens")
    engine.add_argument("--max-output-tokens", type=int, default=_OPTIONS.max_output_tokens,
                        help="longest output without max_tokens")
    engine.add_argument("--embedding-dimensions", type=int,
                        default=_OPTIONS.embedding_dimensions, help="length of embeddings")

    faults = parser.add_argument_group("faults ([REPLICA:]VALUE, repeatable)")
    faults.add_argument("--error-rate", action="append", default=[], metavar="[I:]F",
                        help="fraction of requests answered 500")
    faults.add_argument("--added-latency-ms", action="append", default=[], metavar="[I:]MS",
                        help="delay before a request enters the engine (scaled)")
    faults.add_argument("--hang-rate", action="append", default=[], metavar="[I:]F",
                        help="fraction of requests accepted and never answered")
    faults.add_argument("--crash-after", action="append", default=[], metavar="[I:]N",
                        help="the replica dies when request N+1 arrives")
    faults.add_argument("--throttle-rate", action="append", default=[], metavar="[I:]F",
                        help="fraction of requests answered 429 with a Retry-After, as by a "
                             "rate limiter in front of the server")
    faults.add_argument("--throttle-retry-after-s", action="append", default=[],
                        metavar="[I:]S",
                        help="the throttled answers' Retry-After in wall seconds, not scaled "
                             "(default 1)")


def _fault_values(args: argparse.Namespace
                  ) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    fleet_wide: dict[str, Any] = {}
    per_replica: dict[int, dict[str, Any]] = {}
    for field_name, (flag, convert) in _FAULT_FLAGS.items():
        for raw in getattr(args, field_name):
            replica, sep, value = str(raw).rpartition(":")
            try:
                parsed = convert(value)
                target = per_replica.setdefault(int(replica), {}) if sep else fleet_wide
            except ValueError as exc:
                raise ValueError(f"{flag} {raw!r}: expected [REPLICA:]VALUE") from exc
            target[field_name] = parsed
    return fleet_wide, per_replica


def options_from_args(args: argparse.Namespace) -> SimOptions:
    """Build ``SimOptions`` from parsed flags; ValueError names the offending flag."""
    engine = EngineConfig(
        block_size=args.block_size, num_gpu_blocks=args.num_gpu_blocks,
        max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
        max_model_len=args.max_model_len, max_loras=args.max_loras,
        enable_prefix_caching=not args.no_prefix_caching,
        prefix_cache_blocks=args.prefix_cache_blocks, decode_base_ms=args.decode_base_ms,
        decode_per_seq_ms=args.decode_per_seq_ms, prefill_ms_per_token=args.prefill_ms_per_token,
        lora_load_ms=args.lora_load_ms)
    loras: list[str] = []
    by_model: dict[str, tuple[str, ...]] = {}
    for entry in args.lora:
        name, sep, model = entry.partition("=")
        if not name or (sep and not model):
            raise ValueError(f"--lora {entry!r}: expected NAME or NAME=MODEL")
        if sep:
            by_model[model] = (*by_model.get(model, ()), name)
        else:
            loras.append(name)
    fleet_wide, per_replica = _fault_values(args)
    faults = FaultOptions(**fleet_wide)
    for index in per_replica:
        if not 0 <= index < args.replicas:
            raise ValueError(f"fault for replica {index}, but there are {args.replicas} replicas")
    return SimOptions(
        models=tuple(args.model) if args.model else DEFAULT_MODELS, engine=engine,
        loras=tuple(loras), loras_by_model=by_model, faults=faults,
        replica_faults={i: dataclasses.replace(faults, **v) for i, v in per_replica.items()},
        min_output_tokens=args.min_output_tokens, max_output_tokens=args.max_output_tokens,
        embedding_dimensions=args.embedding_dimensions, time_scale=args.time_scale,
        seed=args.seed)


async def serve(args: argparse.Namespace, options: SimOptions) -> int:
    """Run the fleet until a signal (exit 0) or until every replica has crashed (exit 1)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            fleet = await start_fleet(args.replicas, args.port, host=args.host,
                                      models=options.models, options=options)
        except OSError as exc:
            print(f"inferlane sim: cannot listen on {args.host}:{args.port}: {exc}",
                  file=sys.stderr)
            return 1
        for replica in fleet.replicas:
            print(f"replica {replica.index} model={replica.model} "
                  f"listening on http://{replica.address}", flush=True)
        async with fleet:
            all_crashed: asyncio.Future[Any] = asyncio.ensure_future(
                asyncio.gather(*(r.crashed_event.wait() for r in fleet.replicas)))
            stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
            await asyncio.wait({all_crashed, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for task in (all_crashed, stopped):
                task.cancel()
            await asyncio.gather(all_crashed, stopped, return_exceptions=True)
        if fleet.all_crashed:
            print("inferlane sim: every replica crashed (--crash-after)", file=sys.stderr)
            return 1
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _run_loop(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``inferlane sim``; returns the process exit code."""
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"inferlane sim: {exc}", file=sys.stderr)
        return 2
    return _run_loop(serve(args, options))

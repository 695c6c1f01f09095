"""``inferlane sim`` flags, and the command as a real process."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys

import aiohttp
import pytest

from inferlane.sim.command import configure_parser, options_from_args
from inferlane.sim.faults import FaultOptions

LAUNCH = ("import argparse, sys\n"
          "from inferlane.sim.command import configure_parser, run\n"
          "parser = argparse.ArgumentParser()\n"
          "configure_parser(parser)\n"
          "sys.exit(run(parser.parse_args(sys.argv[1:])))\n")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(argv)


def test_defaults() -> None:
    options = options_from_args(parse())
    assert options.models == ("sim-model",)
    assert options.engine.num_gpu_blocks == 2048
    assert options.engine.block_size == 16
    assert options.engine.max_num_seqs == 64
    assert options.engine.max_loras == 4
    assert options.faults == FaultOptions()
    assert options.replica_faults == {}
    assert options.time_scale == 1.0


def test_flags_map_to_options() -> None:
    options = options_from_args(parse(
        "--replicas", "3", "--model", "a", "--model", "b", "--lora", "x", "--lora", "y=b",
        "--num-gpu-blocks", "64", "--decode-base-ms", "4", "--no-prefix-caching",
        "--time-scale", "0.1", "--seed", "7", "--error-rate", "0.1", "--hang-rate", "2:0.5",
        "--crash-after", "1:10", "--added-latency-ms", "1:5"))
    assert options.models == ("a", "b")
    assert options.adapters_for("a") == ("x",)
    assert options.adapters_for("b") == ("x", "y")
    assert options.engine.num_gpu_blocks == 64
    assert options.engine.decode_base_ms == 4.0
    assert not options.engine.enable_prefix_caching
    assert (options.time_scale, options.seed) == (0.1, 7)
    assert options.faults_for(0) == FaultOptions(error_rate=0.1)
    assert options.faults_for(1) == FaultOptions(error_rate=0.1, crash_after=10,
                                                 added_latency_ms=5.0)
    assert options.faults_for(2) == FaultOptions(error_rate=0.1, hang_rate=0.5)


def test_throttle_flags() -> None:
    options = options_from_args(parse(
        "--replicas", "2", "--throttle-rate", "1:1", "--throttle-retry-after-s", "0.5"))
    assert options.faults_for(0) == FaultOptions(throttle_retry_after_s=0.5)
    assert options.faults_for(1) == FaultOptions(throttle_rate=1.0, throttle_retry_after_s=0.5)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("--error-rate", "lots"), "--error-rate"),
        (("--crash-after", "x:1"), "--crash-after"),
        (("--hang-rate", "5:0.1"), "replica 5"),
        (("--lora", "=m"), "--lora"),
        (("--error-rate", "2"), "error_rate"),
        (("--throttle-rate", "1.5"), "throttle_rate"),
        (("--throttle-retry-after-s", "-1"), "throttle_retry_after_s"),
        (("--throttle-retry-after-s", "x"), "--throttle-retry-after-s"),
        (("--max-num-seqs", "0"), "max_num_seqs"),
        (("--time-scale", "0"), "time_scale"),
        (("--min-output-tokens", "9", "--max-output-tokens", "8"), "min_output_tokens"),
    ],
)
def test_bad_flags(argv: tuple[str, ...], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        options_from_args(parse(*argv))


async def launch(*argv: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LAUNCH, "--port", "0", "--time-scale", "0.02", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    addresses = []
    async with asyncio.timeout(20):
        for _ in range(int(dict(zip(argv[::2], argv[1::2], strict=False)).get("--replicas", 1))):
            line = (await process.stdout.readline()).decode()
            match = re.fullmatch(r"replica (\d+) model=(\S+) listening on http://(\S+)\n", line)
            assert match, line
            addresses.append(match.group(3))
    return process, addresses


async def test_process_serves_until_sigterm() -> None:
    process, addresses = await launch("--replicas", "2")
    try:
        async with aiohttp.ClientSession() as session:
            for address in addresses:
                async with session.get(f"http://{address}/health") as response:
                    assert response.status == 200
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_process_exits_non_zero_when_its_only_replica_crashes() -> None:
    process, addresses = await launch("--crash-after", "0")
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.post(f"http://{addresses[0]}/v1/completions",
                                   json={"prompt": "x"})
        async with asyncio.timeout(20):
            assert await process.wait() == 1
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

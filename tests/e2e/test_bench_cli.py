"""``inferlane bench`` end to end: a real process, a real simulated fleet, a table out."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_bench_compares_modes_and_prints_the_table() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "inferlane", "bench", "--replicas", "2", "--rate", "6",
         "--duration", "2", "--modes", "round-robin,default", "--seed", "3"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    out = completed.stdout
    assert "TTFT p90" in out
    assert "prefix hits" in out
    for mode in ("round-robin", "default"):
        assert f"│ {mode}" in out


def test_bench_rejects_an_unknown_mode() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "inferlane", "bench", "--modes", "fastest"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 2
    assert "unknown mode(s) fastest" in completed.stdout

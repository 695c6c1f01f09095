"""Seeded synthetic workloads for ``inferlane bench`` and ``benchmarks/routing.py``; nothing is
downloaded.

A workload is a list of ``Planned`` requests: when to send (seconds after the start, Poisson
arrivals) and the chat-completions body. Three shapes:

- ``shared_prefix``: many tenants, each with a long system prompt (1-4k tokens at ~4 chars/token)
  and a few multi-turn conversations whose history grows turn by turn (the previous answer is
  appended as synthetic text of the length asked for), short questions and answers;
- ``sharegpt``: independent prompts and outputs with ShareGPT-like log-normal lengths, no sharing;
- ``lora``: short prompts spread over several LoRA adapters (Zipf-like popularity).

Every prompt starts with a per-run ``salt`` so that what one run left in the servers' prefix caches
(and in the routers' prefix indexes) never helps the next one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4
WORKLOADS = ("shared-prefix", "sharegpt", "lora")
_WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
)


@dataclass(frozen=True, slots=True)
class Planned:
    """One request of a run: its send time (s after the start) and body."""

    at: float
    body: dict[str, Any]
    tenant: str


def text_of_tokens(rng: random.Random, tokens: int) -> str:
    """About ``tokens`` tokens of filler text (the simulator counts ceil(len / 4))."""
    words: list[str] = []
    length = 0
    target = tokens * CHARS_PER_TOKEN
    while length < target:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:target]


def arrivals(rng: random.Random, rate: float, duration_s: float) -> list[float]:
    """Poisson arrival times in [0, duration_s) at ``rate`` per second (bounded count)."""
    times: list[float] = []
    now = 0.0
    limit = int(rate * duration_s * 3) + 10
    while len(times) < limit:
        now += rng.expovariate(rate)
        if now >= duration_s:
            break
        times.append(now)
    return times


def _lognormal(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    return max(low, min(high, round(rng.lognormvariate(math.log(median), sigma))))


def shared_prefix(
    times: Sequence[float], seed: int, salt: str, model: str, tenants: int = 32,
    conversations_per_tenant: int = 3, max_turns: int = 6,
) -> list[Planned]:
    rng = random.Random(seed)
    systems = [
        f"{salt} tenant {t}: " + text_of_tokens(rng, rng.randint(1000, 4000))
        for t in range(tenants)
    ]
    # histories[t][c] = the messages of conversation c of tenant t so far
    histories: list[list[list[dict[str, str]]]] = [
        [[] for _ in range(conversations_per_tenant)] for _ in range(tenants)
    ]
    planned: list[Planned] = []
    for at in times:
        tenant = rng.randrange(tenants)
        conversation = rng.randrange(conversations_per_tenant)
        history = histories[tenant][conversation]
        if len(history) >= 2 * max_turns:
            history.clear()
        question = {"role": "user", "content": text_of_tokens(rng, rng.randint(10, 60))}
        answer_tokens = rng.randint(8, 48)
        messages = [{"role": "system", "content": systems[tenant]}, *history, question]
        planned.append(Planned(at, {"model": model, "messages": messages,
                                    "max_tokens": answer_tokens}, f"tenant-{tenant}"))
        history += [question, {"role": "assistant",
                               "content": text_of_tokens(rng, answer_tokens)}]
    return planned


def sharegpt(times: Sequence[float], seed: int, salt: str, model: str) -> list[Planned]:
    rng = random.Random(seed)
    planned = []
    for index, at in enumerate(times):
        prompt = _lognormal(rng, 220, 0.9, 8, 3000)
        output = _lognormal(rng, 70, 0.8, 4, 400)
        content = f"{salt} q{index}: " + text_of_tokens(rng, prompt)
        planned.append(Planned(at, {"model": model, "messages": [
            {"role": "user", "content": content}], "max_tokens": output}, "-"))
    return planned


def lora(
    times: Sequence[float], seed: int, salt: str, adapters: Sequence[str]
) -> list[Planned]:
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) ** 0.6 for rank in range(len(adapters))]
    planned = []
    for index, at in enumerate(times):
        adapter = rng.choices(adapters, weights)[0]
        content = f"{salt} q{index}: " + text_of_tokens(rng, _lognormal(rng, 200, 0.6, 16, 1500))
        planned.append(Planned(at, {"model": adapter, "messages": [
            {"role": "user", "content": content}],
            "max_tokens": _lognormal(rng, 48, 0.6, 4, 256)}, adapter))
    return planned


def build(
    workload: str, times: Sequence[float], seed: int, salt: str, model: str,
    adapters: Sequence[str],
) -> list[Planned]:
    if workload == "shared-prefix":
        return shared_prefix(times, seed, salt, model)
    if workload == "sharegpt":
        return sharegpt(times, seed, salt, model)
    if workload == "lora":
        return lora(times, seed, salt, adapters)
    raise ValueError(f"unknown workload {workload!r} (known: {', '.join(WORKLOADS)})")

"""The sans-IO engine, driven with a fake clock: no sockets, no sleeping."""

from __future__ import annotations

from typing import Any

import pytest

from inferlane.sim.engine import (
    Engine,
    EngineConfig,
    EngineRequest,
    FinishReason,
    SequenceStatus,
    StepResult,
)

FAST: dict[str, Any] = {"decode_base_ms": 10.0, "decode_per_seq_ms": 1.0,
                        "prefill_ms_per_token": 0.5, "lora_load_ms": 100.0}


def request(request_id: int, prompt: int = 16, output: int = 4, *, hashes: tuple[int, ...] = (),
            lora: str | None = None, pooling: bool = False,
            reason: FinishReason = FinishReason.STOP) -> EngineRequest:
    return EngineRequest(request_id, prompt, hashes, output, reason, lora, pooling)


def chain(n: int, start: int = 1000) -> tuple[int, ...]:
    return tuple(range(start, start + n))


class Clock:
    """Steps the engine, advancing simulated time by each step's duration."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.now = 0.0
        self.steps: list[StepResult] = []

    def step(self) -> StepResult:
        result = self.engine.step(self.now)
        self.now = result.end
        self.steps.append(result)
        return result

    def run(self, limit: int = 10_000) -> list[StepResult]:
        for _ in range(limit):
            if not self.engine.has_work:
                return self.steps
            self.step()
        raise AssertionError("engine did not drain")


def token_steps(steps: list[StepResult], request_id: int) -> list[int]:
    return [i for i, s in enumerate(steps) if request_id in s.tokens]


@pytest.mark.parametrize(
    ("batch", "prompt", "cached_blocks", "expected_ms"),
    [
        (1, 16, 0, 10 + 1 + 0.5 * 16),
        (4, 16, 0, 10 + 4 + 0.5 * 64),
        (1, 64, 2, 10 + 1 + 0.5 * 32),  # 2 cached blocks of 16 are not prefilled
        (1, 64, 4, 10 + 1 + 0.5 * 16),  # all cached: the last block is recomputed, as vLLM
        (1, 65, 4, 10 + 1 + 0.5 * 1),
    ],
)
def test_first_step_duration(batch: int, prompt: int, cached_blocks: int,
                             expected_ms: float) -> None:
    engine = Engine(EngineConfig(**FAST))
    hashes = chain(prompt // 16)
    engine.prefix_cache.insert(hashes[:cached_blocks])
    for i in range(batch):
        engine.submit(request(i, prompt, hashes=hashes), 0.0)
    result = engine.step(0.0)
    assert result.batch_size == batch
    assert result.duration == pytest.approx(expected_ms / 1000)
    assert sorted(result.tokens) == list(range(batch))


def test_decode_steps_cost_base_plus_per_sequence() -> None:
    engine = Engine(EngineConfig(**FAST))
    engine.submit(request(1, 16, output=3), 0.0)
    clock = Clock(engine)
    clock.run()
    assert [s.prefill_tokens for s in clock.steps] == [16, 0, 0]
    assert [s.duration for s in clock.steps[1:]] == [pytest.approx(0.011)] * 2
    assert engine.stats.time_to_first_token.count == 1
    assert engine.stats.time_to_first_token.sum == pytest.approx(clock.steps[0].duration)


@pytest.mark.parametrize(
    ("output", "reason"),
    [(1, FinishReason.STOP), (5, FinishReason.LENGTH), (7, FinishReason.STOP)],
)
def test_finishes_after_its_output_tokens(output: int, reason: FinishReason) -> None:
    engine = Engine(EngineConfig(**FAST))
    seq = engine.submit(request(1, output=output, reason=reason), 0.0)
    steps = Clock(engine).run()
    assert len(token_steps(steps, 1)) == output
    assert steps[-1].finished == ((1, reason),)
    assert seq.status is SequenceStatus.FINISHED
    assert seq.finish_reason is reason
    assert engine.stats.finished[reason] == 1
    assert engine.stats.generation_tokens == output
    assert engine.kv_cache.used_blocks == 0


def test_queue_waits_for_max_num_seqs_in_fifo_order() -> None:
    engine = Engine(EngineConfig(max_num_seqs=2, **FAST))
    for i in range(5):
        engine.submit(request(i, output=3), 0.0)
    clock = Clock(engine)
    clock.step()
    assert (engine.num_running, engine.num_waiting) == (2, 3)
    steps = clock.run()
    first_tokens = [token_steps(steps, i)[0] for i in range(5)]
    assert first_tokens == sorted(first_tokens)
    assert first_tokens[0] == first_tokens[1] < first_tokens[2] == first_tokens[3] < first_tokens[4]
    assert max(s.batch_size for s in steps) == 2


def test_kv_capacity_blocks_the_head_of_the_queue() -> None:
    # 8 blocks of 16 tokens: request 1 takes 5, request 2 needs 4 and must wait.
    engine = Engine(EngineConfig(num_gpu_blocks=8, **FAST))
    engine.submit(request(1, 80, output=2), 0.0)
    engine.submit(request(2, 64, output=2), 0.0)
    engine.submit(request(3, 16, output=2), 0.0)  # would fit, but FIFO keeps it behind 2
    clock = Clock(engine)
    clock.step()
    assert (engine.num_running, engine.num_waiting) == (1, 2)
    assert engine.kv_cache_usage == pytest.approx(5 / 8)
    steps = clock.run()
    assert token_steps(steps, 2)[0] == token_steps(steps, 3)[0] > token_steps(steps, 1)[-1]


def test_preemption_recomputes_and_every_token_is_produced_once() -> None:
    # 10 blocks; two sequences of 48 prompt tokens growing to 48+60 tokens cannot both fit.
    engine = Engine(EngineConfig(num_gpu_blocks=10, **FAST))
    engine.submit(request(1, 48, output=60), 0.0)
    engine.submit(request(2, 48, output=60), 0.0)
    steps = Clock(engine).run()
    assert engine.stats.preemptions >= 1
    assert any(s.preempted for s in steps)
    assert len(token_steps(steps, 1)) == 60
    assert len(token_steps(steps, 2)) == 60
    assert engine.kv_cache.used_blocks == 0
    # The newest sequence is the one preempted.
    assert {rid for s in steps for rid in s.preempted} == {2}


def test_chunked_prefill_interleaves_with_decoding() -> None:
    engine = Engine(EngineConfig(max_num_batched_tokens=32, **FAST))
    engine.submit(request(1, 16, output=10), 0.0)
    clock = Clock(engine)
    clock.step()
    engine.submit(request(2, 100, output=1), clock.now)
    steps = clock.run()
    # Request 1 decodes every step while request 2's prompt goes in chunks of <= 31 tokens.
    assert token_steps(steps, 1) == list(range(10))
    prefill_steps = [s for s in steps[1:] if s.prefill_tokens]
    assert [s.prefill_tokens for s in prefill_steps] == [31, 31, 31, 7]
    assert token_steps(steps, 2) == [4]


def test_prefix_cache_hit_skips_prefill_and_counts_tokens() -> None:
    engine = Engine(EngineConfig(**FAST))
    hashes = chain(6)
    engine.submit(request(1, 100, output=1, hashes=hashes), 0.0)
    clock = Clock(engine)
    clock.run()
    second = engine.submit(request(2, 100, output=1, hashes=hashes), clock.now)
    steps = clock.run()
    assert steps[-1].prefill_tokens == 100 - 96
    assert second.num_cached_tokens == 96
    assert (engine.stats.prefix_cache_queries, engine.stats.prefix_cache_hits) == (200, 96)


def test_prefix_cache_disabled() -> None:
    engine = Engine(EngineConfig(enable_prefix_caching=False, **FAST))
    for i in range(2):
        engine.submit(request(i, 64, output=1, hashes=chain(4)), 0.0)
        Clock(engine).run()
    assert engine.stats.prefix_cache_hits == 0
    assert len(engine.prefix_cache) == 0


def test_shared_prefix_blocks_are_counted_once() -> None:
    engine = Engine(EngineConfig(**FAST))
    hashes = chain(8)
    engine.submit(request(1, 128, output=5, hashes=hashes), 0.0)
    clock = Clock(engine)
    clock.step()
    alone = engine.kv_cache.used_blocks
    engine.submit(request(2, 128, output=5, hashes=hashes), clock.now)
    clock.step()
    # Request 1 grew by a decode block; request 2 shares 7 cached blocks and recomputes the
    # last one, which is deduplicated against request 1's once computed.
    assert engine.kv_cache.used_blocks == alone + 1
    clock.run()
    assert engine.kv_cache.used_blocks == 0


@pytest.mark.parametrize(
    ("max_loras", "adapters", "first_batch", "loads"),
    [
        (1, ["a", "b", "a"], [1, 3], 1),  # b cannot get a slot and is skipped, not blocking
        (2, ["a", "b", "c"], [1, 2], 2),
        (4, ["a", "b", "c"], [1, 2, 3], 3),
        (1, [None, "a", "b"], [1, 2], 1),  # the base model needs no slot
    ],
)
def test_lora_slots(max_loras: int, adapters: list[str | None], first_batch: list[int],
                    loads: int) -> None:
    engine = Engine(EngineConfig(max_loras=max_loras, **FAST))
    for i, adapter in enumerate(adapters, start=1):
        engine.submit(request(i, output=2, lora=adapter), 0.0)
    clock = Clock(engine)
    first = clock.step()
    assert sorted(first.tokens) == first_batch
    assert len(first.lora_loads) == loads
    batch = len(first_batch)
    assert first.duration == pytest.approx((10 + batch + 0.5 * 16 * batch + 100 * loads) / 1000)
    steps = clock.run()
    assert all(token_steps(steps, i) for i in range(1, len(adapters) + 1))


def test_lora_info_and_reuse_of_loaded_adapter() -> None:
    engine = Engine(EngineConfig(max_loras=1, **FAST))
    engine.submit(request(1, output=3, lora="a"), 0.0)
    engine.submit(request(2, output=3, lora="b"), 0.0)
    clock = Clock(engine)
    assert clock.step().lora_loads == ("a",)
    assert engine.running_loras == ("a",)
    assert engine.waiting_loras == ("b",)
    clock.run()
    assert engine.loaded_loras == ("b",)
    engine.submit(request(3, output=1, lora="b"), clock.now)
    assert clock.step().lora_loads == ()
    assert engine.stats.lora_loads == 2


@pytest.mark.parametrize("where", ["waiting", "running"])
def test_abort_frees_the_sequence(where: str) -> None:
    engine = Engine(EngineConfig(max_num_seqs=1, **FAST))
    engine.submit(request(1, output=50, lora="a"), 0.0)
    engine.submit(request(2, output=50, lora="b"), 0.0)
    clock = Clock(engine)
    clock.step()
    victim = 1 if where == "running" else 2
    assert engine.abort(victim, clock.now)
    assert not engine.abort(victim, clock.now)
    assert engine.aborted_requests == 1
    assert engine.stats.finished["abort"] == 1
    assert engine.num_running + engine.num_waiting == 1
    assert {1: "a", 2: "b"}[victim] not in engine.running_loras + engine.waiting_loras
    later = clock.run()[1:]
    assert victim not in {rid for s in later for rid in s.tokens}
    assert engine.kv_cache.used_blocks == 0


def test_pooling_request_finishes_after_prefill_without_tokens() -> None:
    engine = Engine(EngineConfig(**FAST))
    engine.submit(request(1, 40, output=0, pooling=True), 0.0)
    steps = Clock(engine).run()
    assert len(steps) == 1
    assert steps[0].tokens == ()
    assert steps[0].finished == ((1, FinishReason.STOP),)
    assert engine.stats.generation_tokens == 0


@pytest.mark.parametrize(
    ("prompt", "output", "pooling"),
    [(0, 4, False), (16, 0, False), (100, 29, False), (130, 0, True)],
)
def test_submit_rejects_requests_that_cannot_run(prompt: int, output: int,
                                                 pooling: bool) -> None:
    engine = Engine(EngineConfig(max_model_len=128, **FAST))
    with pytest.raises(ValueError, match=r"token|context"):
        engine.submit(request(1, prompt, output, pooling=pooling), 0.0)


def test_duplicate_request_id_is_rejected() -> None:
    engine = Engine(EngineConfig(**FAST))
    engine.submit(request(1), 0.0)
    with pytest.raises(ValueError, match="already"):
        engine.submit(request(1), 0.0)


def test_idle_step() -> None:
    result = Engine().step(5.0)
    assert result.idle
    assert result.duration == 0.0
    assert result.end == 5.0


def test_context_limit_is_capped_by_kv_capacity() -> None:
    assert EngineConfig(num_gpu_blocks=4, block_size=16).context_limit == 64
    assert EngineConfig().context_limit == 16384


@pytest.mark.parametrize("field", ["block_size", "num_gpu_blocks", "max_num_seqs", "max_loras"])
def test_config_rejects_non_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EngineConfig(**{field: 0, **FAST})


def test_queue_time_and_latency_histograms_use_the_fake_clock() -> None:
    engine = Engine(EngineConfig(max_num_seqs=1, **FAST))
    engine.submit(request(1, output=2), 0.0)
    engine.submit(request(2, output=2), 0.0)
    clock = Clock(engine)
    steps = clock.run()
    stats = engine.stats
    assert stats.queue_time.count == 2
    assert stats.queue_time.sum == pytest.approx(steps[1].end)  # request 2 waited 2 steps
    assert stats.e2e_request_latency.sum == pytest.approx(steps[1].end + steps[3].end)

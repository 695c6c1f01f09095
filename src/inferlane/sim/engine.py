"""The simulated continuous-batching engine: a sans-IO state machine.

No clock, sockets or asyncio here: the driver (``server.py``) feeds requests with
``submit(request, now)``, calls ``step(now)`` and waits ``StepResult.duration`` of simulated time
before the step's tokens become visible; tests drive it with a fake clock.

One step, as in vLLM's v1 scheduler (FCFS, chunked prefill):

1. Running sequences, oldest first, each get the tokens they still need (1 when decoding, the
   rest of the prompt when prefilling) within the ``max_num_batched_tokens`` budget. When the KV
   cache cannot hold them, the newest running sequence is preempted (its blocks freed, back to the
   front of the waiting queue, to be recomputed later).
2. If nothing was preempted, waiting sequences are admitted in FIFO order while a slot
   (``max_num_seqs``), the token budget and the KV blocks allow; the head blocking on KV blocks
   everyone behind it. A request whose LoRA adapter cannot get one of ``max_loras`` slots is
   skipped (stays queued) and the next one is tried. A prompt's leading blocks found in the
   prefix cache are not prefilled.
3. Duration = ``decode_base_ms + decode_per_seq_ms * batch + prefill_ms_per_token * prefill
   tokens + lora_load_ms * adapters loaded``. Every sequence whose computed tokens reach its
   length samples one token at the end of the step.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import Enum, StrEnum

from inferlane.sim.kv_cache import BlockHolding, KVCache
from inferlane.sim.prefix_cache import PrefixCache
from inferlane.sim.stats import EngineStats


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"


class SequenceStatus(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Capacity and timing of one simulated model server (vLLM flag names where they exist)."""

    block_size: int = 16
    num_gpu_blocks: int = 2048
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 8192
    max_model_len: int = 16384
    max_loras: int = 4
    enable_prefix_caching: bool = True
    prefix_cache_blocks: int | None = None  # None: as many as num_gpu_blocks
    decode_base_ms: float = 8.0
    decode_per_seq_ms: float = 0.25
    prefill_ms_per_token: float = 0.05
    lora_load_ms: float = 50.0

    def __post_init__(self) -> None:
        for name in ("block_size", "num_gpu_blocks", "max_num_seqs", "max_num_batched_tokens",
                     "max_model_len", "max_loras"):
            if getattr(self, name) < 1:
                raise ValueError(f"engine option {name} must be >= 1, got {getattr(self, name)}")
        for name in ("decode_base_ms", "decode_per_seq_ms", "prefill_ms_per_token",
                     "lora_load_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"engine option {name} must be >= 0, got {getattr(self, name)}")
        if self.prefix_cache_blocks is not None and self.prefix_cache_blocks < 0:
            raise ValueError(f"prefix_cache_blocks must be >= 0, got {self.prefix_cache_blocks}")

    @property
    def context_limit(self) -> int:
        """Longest prompt + output: vLLM never runs a sequence longer than its KV cache."""
        return min(self.max_model_len, self.num_gpu_blocks * self.block_size)


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """What the engine needs to know about a request; the prompt itself stays outside."""

    request_id: int
    prompt_tokens: int
    block_hashes: tuple[int, ...]
    max_output_tokens: int
    finish_reason: FinishReason = FinishReason.STOP  # reported once max_output_tokens are out
    lora: str | None = None
    pooling: bool = False  # embeddings: finish once the prompt is computed, no output tokens


class Sequence:
    """The engine's mutable state of one request."""

    __slots__ = ("arrival", "cached_blocks", "finish_reason", "finished_at", "first_scheduled_at",
                 "first_token_at", "holding", "num_cached_tokens", "num_computed", "num_output",
                 "request", "status")

    def __init__(self, request: EngineRequest, arrival: float) -> None:
        self.request = request
        self.arrival = arrival
        self.status = SequenceStatus.WAITING
        self.num_computed = 0
        self.num_output = 0
        self.holding = BlockHolding()
        self.cached_blocks = 0  # prompt blocks already inserted into the prefix cache
        self.num_cached_tokens = 0  # prefix-cache hit at first admission
        self.first_scheduled_at: float | None = None
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.finish_reason: FinishReason | None = None

    @property
    def num_tokens(self) -> int:
        return self.request.prompt_tokens + self.num_output


@dataclass(frozen=True, slots=True)
class StepResult:
    """One engine step: it starts at ``start`` and its outputs exist at ``start + duration``."""

    start: float
    duration: float
    batch_size: int
    prefill_tokens: int
    tokens: tuple[int, ...]  # request ids that got one more output token
    finished: tuple[tuple[int, FinishReason], ...]
    preempted: tuple[int, ...]
    lora_loads: tuple[str, ...]

    @property
    def idle(self) -> bool:
        """Nothing could be scheduled: wait for a submit or abort before stepping again."""
        return self.batch_size == 0

    @property
    def end(self) -> float:
        return self.start + self.duration


class Engine:
    """Continuous batching over a simulated KV cache, prefix cache and LoRA slots."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config = config or EngineConfig()
        self.stats = EngineStats()
        self.kv_cache = KVCache(config.num_gpu_blocks, config.block_size)
        capacity = config.num_gpu_blocks if config.prefix_cache_blocks is None \
            else config.prefix_cache_blocks
        self.prefix_cache = PrefixCache(capacity if config.enable_prefix_caching else 0)
        self._sequences: dict[int, Sequence] = {}
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._running_loras: dict[str, int] = {}  # adapter -> running sequences using it
        self._waiting_loras: dict[str, int] = {}
        self._loaded_loras: OrderedDict[str, None] = OrderedDict()  # GPU slots, LRU order

    # -- observation -----------------------------------------------------------------------

    @property
    def has_work(self) -> bool:
        return bool(self._waiting or self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def kv_cache_usage(self) -> float:
        return self.kv_cache.usage

    @property
    def running_loras(self) -> tuple[str, ...]:
        return tuple(self._running_loras)

    @property
    def waiting_loras(self) -> tuple[str, ...]:
        return tuple(self._waiting_loras)

    @property
    def loaded_loras(self) -> tuple[str, ...]:
        return tuple(self._loaded_loras)

    @property
    def aborted_requests(self) -> int:
        return self.stats.aborted_requests

    def sequence(self, request_id: int) -> Sequence | None:
        """The live (waiting or running) sequence of a request, if any."""
        return self._sequences.get(request_id)

    # -- input -----------------------------------------------------------------------------

    def submit(self, request: EngineRequest, now: float) -> Sequence:
        """Queue a request; ValueError when it could never run on this engine."""
        limit = self.config.context_limit
        if request.request_id in self._sequences:
            raise ValueError(f"request id {request.request_id} is already in the engine")
        if request.prompt_tokens < 1:
            raise ValueError("a request needs at least one prompt token")
        if not request.pooling and request.max_output_tokens < 1:
            raise ValueError("a generation request needs max_output_tokens >= 1")
        if request.prompt_tokens + request.max_output_tokens > limit:
            raise ValueError(
                f"prompt ({request.prompt_tokens}) + output ({request.max_output_tokens}) tokens "
                f"exceed the context limit of {limit} tokens")
        seq = Sequence(request, now)
        self._sequences[request.request_id] = seq
        self._waiting.append(seq)
        _count(self._waiting_loras, request.lora, +1)
        return seq

    def abort(self, request_id: int, now: float) -> bool:
        """Drop a waiting or running request and free its blocks; False if it is not live."""
        seq = self._sequences.pop(request_id, None)
        if seq is None:
            return False
        if seq.status is SequenceStatus.WAITING:
            self._waiting.remove(seq)
            _count(self._waiting_loras, seq.request.lora, -1)
        else:
            self._running.remove(seq)
            self.kv_cache.release(seq.holding)
            _count(self._running_loras, seq.request.lora, -1)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = FinishReason.ABORT
        seq.finished_at = now
        self.stats.aborted_requests += 1
        self.stats.finished[FinishReason.ABORT] += 1
        return True

    # -- the step --------------------------------------------------------------------------

    def step(self, now: float) -> StepResult:
        config = self.config
        budget = config.max_num_batched_tokens
        scheduled: list[tuple[Sequence, int, bool]] = []  # (sequence, tokens, is_prefill)
        preempted: list[int] = []

        running = self._running
        index = 0
        while index < len(running) and budget > 0:
            seq = running[index]
            remaining = seq.num_tokens - seq.num_computed
            count = min(remaining, budget)
            while not self.kv_cache.try_grow(seq.holding, seq.num_computed + count):
                victim = running.pop()
                self._preempt(victim)
                preempted.append(victim.request.request_id)
                if victim is seq:
                    break
            if seq.status is not SequenceStatus.RUNNING:
                break
            scheduled.append((seq, count, remaining > 1 or seq.num_output == 0))
            budget -= count
            index += 1

        lora_loads: list[str] = []
        if not preempted:  # as vLLM: no admissions in a step that had to preempt
            budget = self._admit(now, budget, scheduled, lora_loads)

        if not scheduled:
            return StepResult(now, 0.0, 0, 0, (), (), tuple(preempted), ())

        prefill_tokens = sum(count for _, count, is_prefill in scheduled if is_prefill)
        duration_ms = (config.decode_base_ms + config.decode_per_seq_ms * len(scheduled)
                       + config.prefill_ms_per_token * prefill_tokens
                       + config.lora_load_ms * len(lora_loads))
        end = now + duration_ms / 1000.0
        tokens, finished = self._commit(scheduled, end)
        return StepResult(now, duration_ms / 1000.0, len(scheduled), prefill_tokens, tokens,
                          finished, tuple(preempted), tuple(lora_loads))

    def _admit(self, now: float, budget: int, scheduled: list[tuple[Sequence, int, bool]],
               lora_loads: list[str]) -> int:
        config = self.config
        block_size = config.block_size
        waiting = self._waiting
        skipped: list[Sequence] = []
        while waiting and budget > 0 and len(self._running) < config.max_num_seqs:
            seq = waiting[0]
            request = seq.request
            lora = request.lora
            if (lora is not None and lora not in self._running_loras
                    and len(self._running_loras) >= config.max_loras):
                skipped.append(waiting.popleft())
                continue
            # At least one token must be computed to sample from, as in vLLM.
            hit_blocks = min(self.prefix_cache.match(request.block_hashes),
                             (seq.num_tokens - 1) // block_size)
            shared = request.block_hashes[:hit_blocks]
            computed = hit_blocks * block_size
            count = min(seq.num_tokens - computed, budget)
            if not self.kv_cache.try_admit(seq.holding, shared, computed + count):
                break  # FIFO: the head waits for blocks and so does everyone behind it
            waiting.popleft()
            self.prefix_cache.touch(shared)
            if lora is not None and self._load_lora(lora):
                lora_loads.append(lora)
            _count(self._waiting_loras, lora, -1)
            _count(self._running_loras, lora, +1)
            stats = self.stats
            stats.prefix_cache_queries += seq.num_tokens
            stats.prefix_cache_hits += computed
            if seq.first_scheduled_at is None:
                seq.first_scheduled_at = now
                seq.num_cached_tokens = computed
                stats.prompt_tokens += request.prompt_tokens
                stats.queue_time.observe(now - seq.arrival)
            seq.num_computed = computed
            seq.status = SequenceStatus.RUNNING
            self._running.append(seq)
            scheduled.append((seq, count, True))
            budget -= count
        waiting.extendleft(reversed(skipped))
        return budget

    def _commit(self, scheduled: list[tuple[Sequence, int, bool]], end: float
                ) -> tuple[tuple[int, ...], tuple[tuple[int, FinishReason], ...]]:
        tokens: list[int] = []
        finished: list[tuple[int, FinishReason]] = []
        stats = self.stats
        for seq, count, _ in scheduled:
            seq.num_computed += count
            self._cache_prompt_blocks(seq)
            if seq.num_computed < seq.num_tokens:
                continue  # a prefill chunk: no token yet
            request = seq.request
            if request.pooling:
                self._finish(seq, FinishReason.STOP, end)
                finished.append((request.request_id, FinishReason.STOP))
                continue
            seq.num_output += 1
            stats.generation_tokens += 1
            tokens.append(request.request_id)
            if seq.first_token_at is None:
                seq.first_token_at = end
                stats.time_to_first_token.observe(end - seq.arrival)
            if seq.num_output >= request.max_output_tokens:
                self._finish(seq, request.finish_reason, end)
                finished.append((request.request_id, request.finish_reason))
        if finished:
            self._running = [s for s in self._running if s.status is SequenceStatus.RUNNING]
        return tuple(tokens), tuple(finished)

    def _cache_prompt_blocks(self, seq: Sequence) -> None:
        hashes = seq.request.block_hashes
        upto = min(min(seq.num_computed, seq.request.prompt_tokens) // self.config.block_size,
                   len(hashes))
        if upto > seq.cached_blocks:
            # The whole computed chain, so its head stays the most recently used.
            self.prefix_cache.insert(hashes[:upto])
            seq.cached_blocks = upto
        if upto > len(seq.holding.shared) and self.config.enable_prefix_caching:
            self.kv_cache.share(seq.holding, hashes[:upto])

    def _finish(self, seq: Sequence, reason: FinishReason, end: float) -> None:
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
        seq.finished_at = end
        self.kv_cache.release(seq.holding)
        _count(self._running_loras, seq.request.lora, -1)
        del self._sequences[seq.request.request_id]
        self.stats.finished[reason] += 1
        self.stats.e2e_request_latency.observe(end - seq.arrival)

    def _preempt(self, seq: Sequence) -> None:
        # Recompute-style preemption: everything computed is dropped and redone on readmission.
        self.kv_cache.release(seq.holding)
        seq.num_computed = 0
        seq.status = SequenceStatus.WAITING
        self._waiting.appendleft(seq)
        _count(self._running_loras, seq.request.lora, -1)
        _count(self._waiting_loras, seq.request.lora, +1)
        self.stats.preemptions += 1

    def _load_lora(self, lora: str) -> bool:
        """Make ``lora`` resident; True when it had to be loaded (the step pays for it)."""
        loaded = self._loaded_loras
        if lora in loaded:
            loaded.move_to_end(lora)
            return False
        if len(loaded) >= self.config.max_loras:
            # Admission guarantees a resident adapter without running sequences exists.
            victim = next(name for name in loaded if name not in self._running_loras)
            del loaded[victim]
        loaded[lora] = None
        self.stats.lora_loads += 1
        return True


def _count(counter: dict[str, int], key: str | None, delta: int) -> None:
    if key is None:
        return
    value = counter.get(key, 0) + delta
    if value:
        counter[key] = value
    else:
        del counter[key]


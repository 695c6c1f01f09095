"""A fleet of simulated replicas in one event loop, on consecutive ports.

Used by ``inferlane sim``, the demo, end-to-end tests and benchmarks. Simulated time makes
replicas cheap: eight of them share one core comfortably.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from inferlane.sim.engine import EngineConfig
from inferlane.sim.faults import FaultOptions
from inferlane.sim.server import ReplicaSettings, SimReplica

DEFAULT_MODELS: tuple[str, ...] = ("sim-model",)


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Every knob of a fleet. Replica ``i`` serves ``models[i % len(models)]``."""

    models: tuple[str, ...] = DEFAULT_MODELS
    engine: EngineConfig = field(default_factory=EngineConfig)
    loras: tuple[str, ...] = ()  # adapters offered on top of every base model
    loras_by_model: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    faults: FaultOptions = field(default_factory=FaultOptions)  # fleet-wide
    replica_faults: Mapping[int, FaultOptions] = field(default_factory=dict)  # replaces `faults`
    min_output_tokens: int = 16
    max_output_tokens: int = 128
    embedding_dimensions: int = 16
    time_scale: float = 1.0  # multiplies every simulated duration (0.1 = ten times faster)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("a fleet needs at least one model")
        self.replica_settings(self.models[0])  # validates the output, time and embedding knobs

    def adapters_for(self, model: str) -> tuple[str, ...]:
        extra = tuple(a for a in self.loras_by_model.get(model, ()) if a not in self.loras)
        return self.loras + extra

    def faults_for(self, index: int) -> FaultOptions:
        return self.replica_faults.get(index, self.faults)

    def replica_settings(self, model: str) -> ReplicaSettings:
        return ReplicaSettings(
            model=model, adapters=self.adapters_for(model), engine=self.engine,
            min_output_tokens=self.min_output_tokens, max_output_tokens=self.max_output_tokens,
            embedding_dimensions=self.embedding_dimensions, time_scale=self.time_scale,
            seed=self.seed)


class Fleet:
    """Running replicas; ``stop()`` (or ``async with``) shuts them all down."""

    def __init__(self, replicas: list[SimReplica]) -> None:
        self.replicas = replicas

    @property
    def addresses(self) -> list[str]:
        """``host:port`` of each replica, in replica order."""
        return [r.address for r in self.replicas]

    @property
    def all_crashed(self) -> bool:
        return all(r.crashed for r in self.replicas)

    async def stop(self) -> None:
        for replica in self.replicas:
            await replica.stop()

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


async def start_fleet(replicas: int, port: int, *, host: str = "127.0.0.1",
                      models: Sequence[str] = DEFAULT_MODELS,
                      options: SimOptions | None = None) -> Fleet:
    """Start ``replicas`` replicas on ``port``, ``port + 1``, ... (``port=0``: ephemeral ports).

    An explicit ``models`` argument wins over ``options.models``.
    """
    if replicas < 1:
        raise ValueError(f"a fleet needs at least one replica, got {replicas}")
    options = options or SimOptions()
    served = tuple(models) if tuple(models) != DEFAULT_MODELS else options.models
    if not served:
        raise ValueError("a fleet needs at least one model")
    started: list[SimReplica] = []
    try:
        for index in range(replicas):
            model = served[index % len(served)]
            replica = SimReplica(index, options.replica_settings(model), options.faults_for(index))
            started.append(replica)
            await replica.start(host, port + index if port else 0)
    except BaseException:
        await Fleet(started).stop()
        raise
    return Fleet(started)

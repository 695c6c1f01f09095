"""What endpoint picking is about: the endpoints of a pool and the request being placed.

Sits after routing in the request path: routing has chosen an InferencePool, its Scheduler
(``scheduling.framework``) chooses one of the pool's endpoints. Scheduling is pure (no sockets,
no clock, no global state), so the same code runs in our own data plane and, later, behind
Envoy's ext_proc.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One model-server endpoint of a pool (a ModelServer's address, or a pod IP + target port)."""

    name: str  # "namespace/name" of the ModelServer (or pod) it came from
    host: str
    port: int
    engine: str = "vllm"
    metrics_path: str = "/metrics"
    # "host:port" ("[v6]:port"): computed once, read on every pick, log line and metric.
    address: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        object.__setattr__(self, "address", f"{host}:{self.port}")


@dataclass(frozen=True, slots=True)
class PickRequest:
    """What a picker may know about the request it places."""

    request_id: str
    model: str  # the model name sent upstream (after any rewrite)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    prompt: str = ""  # the prompt text (chat messages flattened) for prefix-cache affinity
    prompt_tokens: int = 0  # estimate (~4 characters per token)
    max_tokens: int | None = None  # requested output cap, if any
    now: float = 0.0  # monotonic seconds, supplied by the caller (pickers read no clock)

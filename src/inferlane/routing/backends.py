"""Backends a route rule can send to: InferencePools (our endpoint picker chooses a replica)
and Providers (one hosted or external API). Routing and the fallback plan name backends by
``BackendRef``; the data plane resolves one against the serving snapshot."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass


class BackendKind(enum.StrEnum):
    POOL = "InferencePool"
    PROVIDER = "Provider"


@dataclass(frozen=True, slots=True)
class BackendRef:
    kind: BackendKind
    key: str  # "namespace/name"

    @property
    def label(self) -> str:
        """How metrics, logs and ``x-inferlane-backend`` name it: ``pool/ns/name`` or
        ``provider/ns/name``."""
        return f"{'pool' if self.kind is BackendKind.POOL else 'provider'}/{self.key}"

    @property
    def is_pool(self) -> bool:
        return self.kind is BackendKind.POOL


def pool_ref(key: str) -> BackendRef:
    return BackendRef(BackendKind.POOL, key)


def provider_ref(key: str) -> BackendRef:
    return BackendRef(BackendKind.PROVIDER, key)


def sticky_unit(value: str, salt: str = "") -> float:
    """A uniform number in [0, 1) fixed by ``value``: the same user always draws the same arm.
    ``salt`` derives independent draws (the split and the model rewrite) from one value."""
    digest = hashlib.blake2b(f"{salt}\0{value}".encode("utf-8", "surrogateescape"),
                             digest_size=8).digest()
    # 53 bits, what a float holds exactly: 64 would round digests near 2**64 up to 1.0.
    return (int.from_bytes(digest, "big") >> 11) / 2.0**53

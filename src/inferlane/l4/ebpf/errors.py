"""The fast path's errors; each message says what failed and what to do about it.

The tree (``InferlaneError`` is inferlane's base, ``inferlane.errors``)::

    EbpfError           the fast path could not be started, updated or removed
    ├── BuildError      lb.bpf.c could not be compiled (missing clang or libbpf headers)
    └── LibbpfError     a libbpf call failed; carries the errno (and libbpf's last words)

None of them reaches a client: the caller logs it and serves the VIP from user space
(``dataplane.open_fast_path``).
"""

from __future__ import annotations

from inferlane.errors import InferlaneError


class EbpfError(InferlaneError):
    """The fast path could not be started, updated or removed."""


class BuildError(EbpfError):
    """The BPF program could not be compiled; the message says why and what to install."""


class LibbpfError(EbpfError):
    """A libbpf call failed; ``errno`` is the kernel's (or libbpf's) error number."""

    def __init__(self, message: str, error_number: int) -> None:
        super().__init__(message)
        self.errno = error_number

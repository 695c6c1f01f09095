"""Run a function inside a named network namespace, on a thread of its own.

Where it sits: ``dataplane`` attaches and detaches its TC programs through netlink, which
acts on the calling thread's network namespace; when the load balancer's interfaces live in
another namespace (``ip netns add NAME``), those calls run here. ``setns`` moves only the
calling thread, so a throwaway thread enters the namespace and dies with it: the rest of the
process never changes namespace. BPF maps and programs are not tied to a namespace, so
their file descriptors work from any thread afterwards.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x4000_0000
NETNS_RUN_DIR = Path("/run/netns")  # where `ip netns add` bind-mounts named namespaces


class NetnsError(OSError):
    """The namespace could not be entered."""


def namespace_path(name: str) -> Path:
    """``/run/netns/NAME``, or ``name`` itself when it is a path (e.g. ``/proc/PID/ns/net``)."""
    return Path(name) if "/" in name else NETNS_RUN_DIR / name


def _enter(name: str) -> None:
    path = namespace_path(name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise NetnsError(error.errno, f"network namespace {name} ({path}): "
                                      f"{error.strerror}") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            number = ctypes.get_errno()
            raise NetnsError(number, f"entering network namespace {name}: "
                                     f"{os.strerror(number)}")
    finally:
        os.close(fd)


def run_in_namespace(name: str | None, function: Callable[[], T]) -> T:
    """``function()``'s result, called inside network namespace ``name`` (None: here)."""
    if name is None:
        return function()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            _enter(name)
            outcome.append(function())
        except BaseException as error:  # handed to the caller's thread below
            failure.append(error)

    worker = threading.Thread(target=body, name=f"netns-{name}", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]

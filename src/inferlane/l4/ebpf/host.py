"""What the host offers the fast path: can it run here, and where do its maps get pinned.

Where it sits: ``availability`` is asked before starting (its ``reason`` goes into the
fallback log line); ``ensure_bpffs`` runs while starting, before pinning.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from pathlib import Path
from typing import Literal, NamedTuple

from inferlane.l4.ebpf import build, libbpf
from inferlane.l4.ebpf.errors import BuildError, EbpfError

log = logging.getLogger(__name__)

BPFFS = Path("/sys/fs/bpf")
_CAP_NET_ADMIN, _CAP_SYS_ADMIN, _CAP_BPF = 12, 21, 39

Cause = Literal["ok", "platform", "privileges", "library", "kernel", "toolchain", "start"]


class Availability(NamedTuple):
    """Whether the fast path can run here; ``reason`` is for the fallback log line."""

    available: bool
    reason: str
    cause: Cause


def _effective_capabilities() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def availability() -> Availability:
    """Check platform, privileges, libbpf, the kernel and the toolchain (compiling the
    program if it is not cached yet); the first problem found is the reason."""
    if not sys.platform.startswith("linux"):
        return Availability(False, f"eBPF needs Linux, this is {sys.platform}", "platform")
    capabilities = _effective_capabilities()
    has = {bit: bool(capabilities >> bit & 1) for bit in
           (_CAP_NET_ADMIN, _CAP_SYS_ADMIN, _CAP_BPF)}
    if not has[_CAP_NET_ADMIN] or not (has[_CAP_BPF] or has[_CAP_SYS_ADMIN]):
        return Availability(False, f"loading and attaching TC programs needs root (CAP_BPF or "
                                   f"CAP_SYS_ADMIN, and CAP_NET_ADMIN); this process (uid "
                                   f"{os.geteuid()}) lacks them", "privileges")
    try:
        library = libbpf.library()
    except OSError as error:
        return Availability(False, f"{libbpf.LIBRARY} cannot be loaded ({error}): install "
                                   "libbpf (Debian: apt-get install libbpf-dev)", "library")
    fd = library.bpf_map_create(libbpf.BPF_MAP_TYPE_ARRAY, b"inferlane_probe", 4, 4, 1, None)
    if fd < 0:
        return Availability(False, f"the kernel refuses BPF (creating a map: "
                                   f"{os.strerror(-fd)})", "kernel")
    os.close(fd)
    try:
        build.compiled_object()
    except BuildError as error:
        return Availability(False, str(error), "toolchain")
    return Availability(True, "eBPF fast path available", "ok")


def mount_point(path: Path) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount holding ``path``."""
    best = ("/", "")
    wanted = str(path)
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            fstype = fields[fields.index("-") + 1]
            inside = wanted == point or wanted.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[0]):
                best = (point, fstype)
    return best


def ensure_bpffs(pin_root: Path) -> None:
    """Pins need a BPF filesystem; mount the conventional one at /sys/fs/bpf when it is
    missing (as Cilium and systemd do), never one anywhere else."""
    point, fstype = mount_point(pin_root)
    if fstype == "bpf":
        return
    if pin_root.is_relative_to(BPFFS) and point != str(BPFFS):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"bpf", str(BPFFS).encode(), b"bpf", 0, None) != 0:
            number = ctypes.get_errno()
            raise EbpfError(f"{BPFFS} is not a BPF filesystem and mounting one failed "
                            f"({os.strerror(number)}): mount -t bpf bpf {BPFFS}")
        log.info("mounted a BPF filesystem at %s (none was mounted) to pin the fast path's "
                 "maps", BPFFS)
        return
    raise EbpfError(f"pin root {pin_root} is not on a BPF filesystem (it is on {point}, "
                    f"{fstype or 'unknown'}): mount -t bpf bpf DIR, or pin under {BPFFS}")

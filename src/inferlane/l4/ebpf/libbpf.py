"""libbpf 1.x through ctypes: the few calls the eBPF control plane makes, with errors mapped.

Where it sits: below ``maps`` and ``dataplane``; nothing else in inferlane touches libbpf.

Why ctypes to ``libbpf.so.1`` (Debian's libbpf1, a dependency of libbpf-dev and bpftool)
rather than bpftool or a Python package: a new 65537-slot Maglev table is one map creation
and one ``mmap`` copy here (≈1 ms), where bpftool would take a process per slot or a batch
file it parses slowly; libbpf also does what bpftool cannot do from outside — hand an
inner-map template fd to an ``ARRAY_OF_MAPS`` before load and keep the map fds open between
calls — and its TC API attaches through netlink without the ``tc`` binary. The maintained Python BPF
packages either wrap BCC (which compiles at run time with its own LLVM) or are not packaged
for Debian; a thin binding over the C library the kernel people maintain is smaller.

libbpf 1.x returns ``-errno`` from int functions and ``NULL`` (with ``errno`` set) from
pointer ones; ``check``/``check_pointer`` turn both into ``LibbpfError``. libbpf's own
messages (e.g. the verifier log when a load fails) go to the ``inferlane.l4.ebpf.libbpf``
logger, and the last warnings are quoted in the error that follows them.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
from collections import deque
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_size_t,
    c_uint,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any

from inferlane.l4.ebpf.errors import LibbpfError

log = logging.getLogger(__name__)

LIBRARY = "libbpf.so.1"

BPF_ANY = 0
BPF_MAP_TYPE_ARRAY = 2
BPF_F_MMAPABLE = 1 << 10
BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2
_LIBBPF_WARN, _LIBBPF_INFO = 0, 1


class BpfTcHook(Structure):
    """``struct bpf_tc_hook`` (libbpf.h); ``sz`` is its size, for libbpf's versioning."""

    _fields_ = [("sz", c_size_t), ("ifindex", c_int), ("attach_point", c_uint),
                ("parent", c_uint32)]


class BpfTcOpts(Structure):
    """``struct bpf_tc_opts`` (libbpf.h)."""

    _fields_ = [("sz", c_size_t), ("prog_fd", c_int), ("flags", c_uint32),
                ("prog_id", c_uint32), ("handle", c_uint32), ("priority", c_uint32)]


_PrintFunction = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_recent_warnings: deque[str] = deque(maxlen=40)

# name: (restype, argtypes); pointers to libbpf's opaque structs are plain c_void_p.
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_set_print": (c_void_p, [_PrintFunction]),
    "libbpf_num_possible_cpus": (c_int, []),
    "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
    "bpf_object__load": (c_int, [c_void_p]),
    "bpf_object__close": (None, [c_void_p]),
    "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_program__fd": (c_int, [c_void_p]),
    "bpf_map__fd": (c_int, [c_void_p]),
    "bpf_map__key_size": (c_uint32, [c_void_p]),
    "bpf_map__value_size": (c_uint32, [c_void_p]),
    "bpf_map__max_entries": (c_uint32, [c_void_p]),
    "bpf_map__set_inner_map_fd": (c_int, [c_void_p, c_int]),
    "bpf_map__set_max_entries": (c_int, [c_void_p, c_uint32]),
    "bpf_map__pin": (c_int, [c_void_p, c_char_p]),
    "bpf_map__unpin": (c_int, [c_void_p, c_char_p]),
    "bpf_map_create": (c_int, [c_uint, c_char_p, c_uint32, c_uint32, c_uint32, c_void_p]),
    "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, c_uint64]),
    "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_obj_get": (c_int, [c_char_p]),
    "bpf_prog_get_fd_by_id": (c_int, [c_uint32]),
    "bpf_tc_hook_create": (c_int, [POINTER(BpfTcHook)]),
    "bpf_tc_hook_destroy": (c_int, [POINTER(BpfTcHook)]),
    "bpf_tc_attach": (c_int, [POINTER(BpfTcHook), POINTER(BpfTcOpts)]),
    "bpf_tc_detach": (c_int, [POINTER(BpfTcHook), POINTER(BpfTcOpts)]),
}


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.vsnprintf.restype = c_int
    libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
    return libc


def _forward_print(level: int, fmt: bytes, args: int) -> int:
    # Debug output (a line per relocation) is dropped unformatted; it would cost more than
    # the load itself. The va_list is passed straight through to vsnprintf: on x86-64 it is
    # a pointer already, on arm64 the callee got a pointer to a copy either way.
    if level > _LIBBPF_INFO:
        return 0
    buffer = ctypes.create_string_buffer(2048)
    _libc().vsnprintf(buffer, len(buffer), fmt, args)
    text = buffer.value.decode(errors="replace").rstrip()
    if level == _LIBBPF_WARN:
        _recent_warnings.extend(line for line in text.splitlines() if line.strip())
        log.warning("libbpf: %s", text)
    else:
        log.debug("libbpf: %s", text)
    return 0


_print = _PrintFunction(_forward_print)  # kept referenced: libbpf holds the pointer


@functools.cache
def library() -> ctypes.CDLL:
    """``libbpf.so.1`` with its prototypes declared; OSError when it cannot be loaded."""
    lib = ctypes.CDLL(LIBRARY, use_errno=True)
    for name, (restype, argtypes) in _SIGNATURES.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    lib.libbpf_set_print(_print)
    return lib


def _describe(action: str, error_number: int) -> str:
    message = f"{action}: {os.strerror(error_number)} ({errno.errorcode.get(error_number, '?')})"
    if _recent_warnings:
        tail = list(_recent_warnings)[-12:]
        message += "\nlibbpf said:\n  " + "\n  ".join(tail)
    return message


def check(result: int, action: str) -> int:
    """``result`` of an int-returning libbpf call, or LibbpfError naming ``action``."""
    if result < 0:
        raise LibbpfError(_describe(action, -result), -result)
    return result


def check_pointer(result: int | None, action: str) -> int:
    """``result`` of a pointer-returning libbpf call, or LibbpfError from ``errno``."""
    if not result:
        number = ctypes.get_errno() or errno.EINVAL
        raise LibbpfError(_describe(action, number), number)
    return result


def forget_warnings() -> None:
    """Start a new operation: earlier libbpf warnings are not quoted in its errors."""
    _recent_warnings.clear()


def possible_cpus() -> int:
    """How many per-CPU values a per-CPU map lookup returns."""
    return check(library().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")

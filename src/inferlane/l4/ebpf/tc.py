"""Attach BPF programs to an interface's clsact hooks, and take them off again (libbpf's TC
API, through netlink in the calling thread's network namespace).

Where it sits: ``dataplane`` calls ``attach`` while starting and ``detach`` while closing,
both inside the load balancer's namespace (``netns.run_in_namespace``). Filters are
direct-action ``bpf`` filters at ``priority`` with a ``handle`` of the caller's choosing; the
clsact qdisc is added when missing and removed again only by this process, once the last of its
attachments on that interface is detached (several fast paths, e.g. a TCP and a UDP VIP, share
one interface's qdisc; destroying it would take the others' filters with it, and other tools').
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from collections.abc import Sequence
from ctypes import sizeof
from dataclasses import dataclass, field

from inferlane.l4.ebpf import libbpf
from inferlane.l4.ebpf.errors import EbpfError
from inferlane.l4.ebpf.libbpf import BPF_TC_EGRESS, BPF_TC_INGRESS, BpfTcHook, BpfTcOpts, check

DIRECTIONS = {BPF_TC_INGRESS: "ingress", BPF_TC_EGRESS: "egress"}
_GONE = (-errno.ENOENT, -errno.ENODEV)  # the filter, or its whole device, is not there
# This process's attachments per (network namespace inode, ifindex), and the qdiscs it added.
_USERS: dict[tuple[int, int], int] = {}
_CREATED: set[tuple[int, int]] = set()


def _where(ifindex: int) -> tuple[int, int]:
    """The interface's identity across namespaces (this thread's namespace inode + index)."""
    return os.stat("/proc/thread-self/ns/net").st_ino, ifindex


@dataclass
class Attachment:
    """What ``attach`` did, for ``detach`` to undo."""

    interface: str
    ifindex: int
    handle: int
    priority: int
    where: tuple[int, int]  # _where(ifindex), counted in _USERS until detached
    program_ids: list[tuple[int, int]] = field(default_factory=list)  # (point, kernel id)


def attach(interface: str, programs: Sequence[tuple[int, int, str]], *, handle: int,
           priority: int) -> Attachment:
    """Attach each (attach point, program fd, name) of ``programs`` to ``interface``;
    all or nothing: on failure, what was attached is detached before the error is raised."""
    try:
        ifindex = socket.if_nametoindex(interface)
    except OSError:
        raise EbpfError(f"no network interface {interface} in this network namespace") from None
    lib = libbpf.library()
    hook = BpfTcHook(sz=sizeof(BpfTcHook), ifindex=ifindex,
                     attach_point=BPF_TC_INGRESS | BPF_TC_EGRESS)
    result = lib.bpf_tc_hook_create(ctypes.byref(hook))
    where = _where(ifindex)
    if result != -errno.EEXIST:
        check(result, f"adding a clsact qdisc to {interface}")
        _CREATED.add(where)
    _USERS[where] = _USERS.get(where, 0) + 1
    done = Attachment(interface, ifindex, handle, priority, where)
    try:
        for point, fd, name in programs:
            hook.attach_point = point
            options = BpfTcOpts(sz=sizeof(BpfTcOpts), prog_fd=fd, handle=handle,
                                priority=priority)
            result = lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(options))
            if result == -errno.EEXIST:
                raise EbpfError(
                    f"a tc filter with handle {handle:#x} priority {priority} is already on "
                    f"{interface} {DIRECTIONS[point]}: this instance runs already, or a "
                    f"crashed run left it; remove it with `tc filter del dev {interface} "
                    f"{DIRECTIONS[point]} handle {handle:#x} prio {priority} bpf`")
            check(result, f"attaching {name} to {interface} {DIRECTIONS[point]}")
            done.program_ids.append((point, options.prog_id))
    except EbpfError:
        try:
            detach(done)
        except EbpfError as cleanup:
            raise EbpfError(f"attaching to {interface} failed and so did undoing it: "
                            f"{cleanup}") from cleanup
        raise
    return done


def detach(attachment: Attachment) -> None:
    """Remove the filters ``attach`` added (and the qdisc, when it added that); filters or
    a device that are gone already count as removed."""
    lib = libbpf.library()
    hook = BpfTcHook(sz=sizeof(BpfTcHook), ifindex=attachment.ifindex)
    problems = []
    for point, _ in attachment.program_ids:
        hook.attach_point = point
        options = BpfTcOpts(sz=sizeof(BpfTcOpts), handle=attachment.handle,
                            priority=attachment.priority)
        result = lib.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(options))
        if result < 0 and result not in _GONE:
            problems.append(f"detaching from {attachment.interface} {DIRECTIONS[point]}: "
                            f"{os.strerror(-result)}")
    attachment.program_ids.clear()
    where = attachment.where
    users = _USERS.get(where, 0) - 1
    if users > 0:
        _USERS[where] = users
    else:
        _USERS.pop(where, None)
        if where in _CREATED:  # the last of ours: the qdisc we added goes too
            _CREATED.discard(where)
            hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS
            result = lib.bpf_tc_hook_destroy(ctypes.byref(hook))
            if result < 0 and result not in _GONE:
                problems.append(f"removing the clsact qdisc of {attachment.interface}: "
                                f"{os.strerror(-result)}")
    if problems:
        raise EbpfError("; ".join(problems))

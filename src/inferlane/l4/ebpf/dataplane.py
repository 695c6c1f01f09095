"""The eBPF fast path's control plane: load, fill, swap, count, and remove the TC program.

Where it sits: an alternative to the user-space L4 proxy for one virtual IP:port. Packets
never reach Python: ``lb.bpf.c`` rewrites them in the kernel (see its header for the
design), and this module only manages it — ``start`` compiles (``build``) and loads it,
writes the config and the first Maglev table, pins the maps under
``/sys/fs/bpf/inferlane/INSTANCE/`` (for bpftool and operators) and attaches both programs
to the client-facing interface; ``update`` swaps in a new table; ``counters``/``flows`` read
the maps; ``close`` takes everything away again. ``open_fast_path`` is what a caller uses to
start it or log why the user-space data plane serves the VIP instead.

What the host must provide: IPv4 routes from the load balancer to the backends and from
the backends back to the clients *through the load balancer* (a NAT load balancer, like
IPVS-NAT), and ``net.ipv4.ip_forward=1`` in the load balancer's namespace. The VIP needs no
address: packets to it are rewritten before routing.

Flows: a flow keeps its backend while its entry lives (LRU, see ``lb.bpf.c``); a backend
with weight 0 leaves the table but keeps its flows (drain); a backend removed from the set
loses them — ``update`` purges them, so their next packet is balanced afresh rather than
sent to a backend that is gone.

An ``EbpfDataPlane`` has one owner (the L4 service's control loop): its methods are not
meant to be called from several threads at once.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import re
import time
import zlib
from array import array
from collections.abc import Sequence
from ctypes import c_uint32, sizeof
from dataclasses import dataclass
from pathlib import Path

from inferlane.l4.ebpf import build, layout, libbpf, tc
from inferlane.l4.ebpf.errors import EbpfError, LibbpfError
from inferlane.l4.ebpf.host import BPFFS, Availability, availability, ensure_bpffs
from inferlane.l4.ebpf.indexes import BackendIndexes
from inferlane.l4.ebpf.libbpf import BPF_TC_EGRESS, BPF_TC_INGRESS, check, check_pointer
from inferlane.l4.ebpf.maps import BpfMap, PerCpuArray, create_table
from inferlane.l4.ebpf.netns import NetnsError, run_in_namespace
from inferlane.l4.flows import L4Backend, Protocol
from inferlane.l4.maglev import DEFAULT_TABLE_SIZE, MaglevTable

log = logging.getLogger(__name__)

DEFAULT_PIN_ROOT = BPFFS / "inferlane"
TC_PRIORITY = 0x1A7E  # an uncommon priority, so other tools' filters rarely clash with ours
PROGRAMS = ((BPF_TC_INGRESS, "to_backend"), (BPF_TC_EGRESS, "from_backend"))
MAPS = ("config", "backends", "maglev", "flows", "replies", "stats")
DEFAULT_MAX_FLOWS = 131072  # lb.bpf.c's MAX_FLOWS: ≈27 MiB of kernel memory
TABLE_MAP_NAME = "il_maglev"  # kernel map names: at most 15 of [A-Za-z0-9_.]
_INSTANCE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class BackendCounters:
    """What the fast path forwarded for one backend. Packets count a GSO packet's segments;
    bytes are L3 bytes as the program saw them (a GSO packet's headers count once)."""

    packets: int  # client -> backend
    bytes: int
    reply_packets: int  # backend -> client
    reply_bytes: int


class EbpfDataPlane:
    """One VIP:port balanced by the TC program; see the module docstring.

    ``instance`` names the pin directory and must be unique per host (one VIP:port each);
    ``netns`` is the ``ip netns`` name (or a ``/proc/PID/ns/net`` path) of the namespace
    that holds the client-facing interface, None for this process's own.
    """

    def __init__(self, instance: str = "default", *, netns: str | None = None,
                 pin_root: Path = DEFAULT_PIN_ROOT) -> None:
        if not _INSTANCE_RE.fullmatch(instance):
            raise ValueError(f"instance {instance!r}: 1-64 of letters, digits, '_', '.', '-'")
        self.instance = instance
        self.netns = netns
        self.pin_dir = pin_root / instance
        self.table_size = 0
        self._pin_root = pin_root
        # Derived from the instance: two instances (two VIPs) can share an interface.
        self._tc_handle = zlib.crc32(instance.encode()) % 0xFFFF + 1
        self._object: int | None = None
        self._handles: dict[str, int] = {}  # map name -> libbpf's struct bpf_map *
        self._table_fd: int | None = None
        self._pinned: list[Path] = []
        self._attachment: tc.Attachment | None = None
        self._indexes: BackendIndexes | None = None
        self._backends = BpfMap("backends", -1, c_uint32, layout.Backend)
        self._maglev = BpfMap("maglev", -1, c_uint32, c_uint32)
        self._flows = BpfMap("flows", -1, layout.FlowKey, layout.FlowTarget)
        self._replies = BpfMap("replies", -1, layout.FlowKey, layout.FlowTarget)
        self._config = BpfMap("config", -1, c_uint32, layout.LbConfig)
        self._stats: PerCpuArray[layout.Counters] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, vip: str, port: int, protocol: Protocol, client_iface: str,
              backends: Sequence[L4Backend], *, table: MaglevTable | None = None,
              table_size: int = DEFAULT_TABLE_SIZE, udp_idle_timeout: float | None = None,
              max_flows: int = DEFAULT_MAX_FLOWS) -> None:
        """Balance ``vip:port/protocol`` arriving on ``client_iface`` over ``backends``
        (``table``: a prebuilt Maglev table over them; else one of ``table_size`` slots).
        ``udp_idle_timeout`` (seconds) ends an idle UDP flow; ``max_flows`` sizes the
        connection table (least recently used flows go beyond it; a flow costs two entries
        of ≈104 bytes of kernel memory, one per direction).
        EbpfError when anything fails; whatever was set up by then is removed again."""
        if self._object is not None:
            raise EbpfError(f"eBPF instance {self.instance} is already started")
        address = ipaddress.ip_address(vip)
        if address.version != 4:
            raise ValueError(f"VIP {vip}: the eBPF fast path handles IPv4 only")
        if protocol not in layout.IPPROTO or not 0 < port < 65536:
            raise ValueError(f"{vip}:{port}/{protocol}: a port 1-65535 and tcp or udp")
        if table is None:
            table = MaglevTable.build(backends, table_size)
        libbpf.forget_warnings()
        try:
            self._load(build.compiled_object(), table.size, max_flows)
            idle = udp_idle_timeout if protocol == "udp" and udp_idle_timeout else 0.0
            self._config.update(c_uint32(0), layout.LbConfig(
                vip=layout.ipv4(vip), port=layout.port(port),
                protocol=layout.IPPROTO[protocol], table_size=table.size,
                udp_idle_ns=round(idle * 1e9)))
            self.update(backends, table)
            self._pin()
            run_in_namespace(self.netns, lambda: self._attach(client_iface))
        except (EbpfError, OSError) as error:
            with contextlib.suppress(EbpfError):
                self.close()
            raise EbpfError(f"starting the eBPF fast path for {vip}:{port}/{protocol} on "
                            f"{client_iface}: {error}") from error
        log.info("eBPF fast path on %s: %s:%d/%s over %d backends (table %d slots, pinned at "
                 "%s)", client_iface, vip, port, protocol, len(backends), table.size,
                 self.pin_dir)

    def update(self, backends: Sequence[L4Backend], table: MaglevTable | None = None) -> None:
        """Make ``backends`` the set and ``table`` (default: a Maglev table over them) the
        table new flows are looked up in, swapped in atomically; flows of backends no
        longer in the set are purged (weight 0 keeps them: it drains)."""
        if self._object is None or self._indexes is None or self._stats is None:
            raise EbpfError(f"eBPF instance {self.instance} is not started")
        if table is None:
            table = MaglevTable.build(backends, self.table_size)
        if table.size != self.table_size:
            raise ValueError(f"table of {table.size} slots; this instance's tables have "
                             f"{self.table_size} (fixed at start)")
        keys = {backend.key for backend in backends}
        strays = [backend.key for backend in table.backends if backend.key not in keys]
        if strays:
            raise ValueError(f"the table names backends outside the set: {', '.join(strays)}")
        for backend in backends:
            if ipaddress.ip_address(backend.host).version != 4:
                raise ValueError(f"backend {backend.key}: the eBPF fast path handles IPv4 only")
        started = time.perf_counter()
        plan = self._indexes.plan([backend.key for backend in backends])
        by_key = {backend.key: backend for backend in backends}
        for key, index in plan.added.items():
            self._stats.reset(index)
            self._backends.update(c_uint32(index), layout.Backend(
                ip=layout.ipv4(by_key[key].host), port=layout.port(by_key[key].port)))
        if table.backends:
            owners = [plan.current[backend.key] for backend in table.backends]
            slots = array("I", [owners[slot] for slot in table.slots()])
        else:
            slots = array("I", [layout.NO_BACKEND]) * table.size
        fresh = create_table(TABLE_MAP_NAME, slots)
        try:
            # The swap. For map-in-map updates the kernel waits out an RCU grace period
            # before returning (≈8 ms here), so afterwards no packet is still looking up the
            # old table: the purge below cannot race a flow being created from it.
            self._maglev.update(c_uint32(0), c_uint32(fresh))
        except LibbpfError:
            os.close(fresh)
            raise
        if self._table_fd is not None:
            os.close(self._table_fd)  # the kernel frees it once no packet holds it
        self._table_fd = fresh
        self._indexes.commit(plan)
        swapped = time.perf_counter()
        purged = self._purge(set(plan.removed.values())) if plan.removed else 0
        log.debug("eBPF %s: table of %d slots swapped in %.1f ms, %d flows of %d removed "
                  "backends purged", self.instance, table.size, (swapped - started) * 1e3,
                  purged, len(plan.removed))

    def close(self) -> None:
        """Detach the programs, remove the clsact qdisc if ``start`` added it, unpin and free
        the maps. Safe to call twice and after a failed ``start``; EbpfError lists what could
        not be removed."""
        problems: list[str] = []
        attachment, self._attachment = self._attachment, None
        if attachment is not None:
            try:
                run_in_namespace(self.netns, lambda: tc.detach(attachment))
            except NetnsError as error:
                # The namespace is gone, and with it the interface and its filters.
                if error.errno != errno.ENOENT:
                    problems.append(str(error))
            except (EbpfError, OSError) as error:
                problems.append(str(error))
        for path in reversed(self._pinned):
            try:
                if path.is_dir():
                    path.rmdir()
                else:
                    path.unlink()
            except FileNotFoundError:
                pass
            except OSError as error:
                problems.append(f"unpinning {path}: {error}")
        self._pinned.clear()
        if self._object is not None:
            libbpf.library().bpf_object__close(self._object)  # closes the maps' fds too
            self._object = None
        self._handles = {}
        for bpf_map in (self._config, self._backends, self._maglev, self._flows,
                        self._replies):
            bpf_map.fd = -1
        if self._table_fd is not None:
            os.close(self._table_fd)
            self._table_fd = None
        self._indexes = None
        self._stats = None
        if problems:
            raise EbpfError(f"eBPF instance {self.instance} not fully removed: "
                            + "; ".join(problems))

    # -- reading -----------------------------------------------------------------------

    def counters(self) -> dict[str, BackendCounters]:
        """Per backend key: what went to and came from it, summed over CPUs. Includes
        removed backends until their index is reused."""
        if self._indexes is None or self._stats is None:
            raise EbpfError(f"eBPF instance {self.instance} is not started")
        result = {}
        for index, key in sorted(self._indexes.names().items()):
            per_cpu = self._stats.lookup(index)
            result[key] = BackendCounters(
                packets=sum(value.packets for value in per_cpu),
                bytes=sum(value.bytes for value in per_cpu),
                reply_packets=sum(value.reply_packets for value in per_cpu),
                reply_bytes=sum(value.reply_bytes for value in per_cpu))
        return result

    def dropped(self) -> int:
        """Packets to the VIP dropped because the table had no backend for them."""
        if self._indexes is None or self._stats is None:
            raise EbpfError(f"eBPF instance {self.instance} is not started")
        return sum(value.packets for value in self._stats.lookup(self._indexes.capacity))

    def flows(self) -> int:
        """How many client flows the connection table holds (idle ones until evicted); walks
        the table, one syscall per flow."""
        if self._object is None:
            raise EbpfError(f"eBPF instance {self.instance} is not started")
        return sum(1 for _ in self._flows)

    @property
    def program_ids(self) -> tuple[int, ...]:
        """Kernel ids of the attached programs (ingress, egress)."""
        if self._attachment is None:
            return ()
        return tuple(program_id for _, program_id in self._attachment.program_ids)

    # -- steps -------------------------------------------------------------------------

    def _load(self, path: Path, table_size: int, max_flows: int) -> None:
        lib = libbpf.library()
        self._object = check_pointer(lib.bpf_object__open_file(str(path).encode(), None),
                                     f"opening {path}")
        handles = {name: check_pointer(lib.bpf_object__find_map_by_name(self._object,
                                                                        name.encode()),
                                       f"finding map {name} in {path}")
                   for name in MAPS}
        # The outer map's inner-map template is the first (empty) table itself.
        first = create_table(TABLE_MAP_NAME,
                             array("I", [layout.NO_BACKEND]) * table_size)
        self._table_fd = first
        self.table_size = table_size
        check(lib.bpf_map__set_inner_map_fd(handles["maglev"], first), "setting the table map")
        for name in ("flows", "replies"):
            check(lib.bpf_map__set_max_entries(handles[name], max_flows), f"sizing map {name}")
        check(lib.bpf_object__load(self._object), f"loading {path} into the kernel")
        self._handles = handles
        expected = {"config": (c_uint32, layout.LbConfig), "backends": (c_uint32, layout.Backend),
                    "flows": (layout.FlowKey, layout.FlowTarget),
                    "replies": (layout.FlowKey, layout.FlowTarget),
                    "stats": (c_uint32, layout.Counters)}
        for name, (key_type, value_type) in expected.items():
            sizes = (lib.bpf_map__key_size(handles[name]), lib.bpf_map__value_size(handles[name]))
            if sizes != (sizeof(key_type), sizeof(value_type)):
                raise EbpfError(f"map {name} of {path} has key/value sizes {sizes}, layout.py "
                                f"expects {(sizeof(key_type), sizeof(value_type))}: update "
                                "layout.py with lb.bpf.c")
        for bpf_map in (self._config, self._backends, self._maglev, self._flows,
                        self._replies):
            bpf_map.fd = check(lib.bpf_map__fd(handles[bpf_map.name]), f"map {bpf_map.name}")
        self._stats = PerCpuArray("stats", check(lib.bpf_map__fd(handles["stats"]), "stats"),
                                  layout.Counters)
        self._indexes = BackendIndexes(lib.bpf_map__max_entries(handles["backends"]))
        self._maglev.update(c_uint32(0), c_uint32(first))

    def _pin(self) -> None:
        ensure_bpffs(self._pin_root)
        self._pin_root.mkdir(exist_ok=True)
        try:
            self.pin_dir.mkdir()
        except FileExistsError:
            raise EbpfError(f"{self.pin_dir} exists: another control plane runs instance "
                            f"{self.instance}, or one exited without close() (its programs "
                            f"may still be attached); remove it with rm -r {self.pin_dir} and "
                            "detach them, or pick another instance name") from None
        self._pinned.append(self.pin_dir)
        lib = libbpf.library()
        for name, handle in self._handles.items():
            path = self.pin_dir / name
            check(lib.bpf_map__pin(handle, str(path).encode()), f"pinning map {name} at {path}")
            self._pinned.append(path)

    def _attach(self, interface: str) -> None:
        # Runs in the load balancer's namespace: the sysctl and the interface are its.
        forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        if forwarding != "1":
            raise EbpfError(f"net.ipv4.ip_forward is {forwarding} where {interface} is: the "
                            "kernel would not forward the rewritten packets; enable it "
                            "(sysctl -w net.ipv4.ip_forward=1)")
        lib = libbpf.library()
        programs = []
        for point, name in PROGRAMS:
            handle = check_pointer(lib.bpf_object__find_program_by_name(self._object,
                                                                        name.encode()),
                                   f"finding program {name}")
            programs.append((point, lib.bpf_program__fd(handle), name))
        self._attachment = tc.attach(interface, programs, handle=self._tc_handle,
                                     priority=TC_PRIORITY)

    def _purge(self, indexes: set[int]) -> int:
        doomed = [(key, target) for key in self._flows
                  if (target := self._flows.lookup(key)) is not None
                  and target.backend in indexes]
        for key, target in doomed:
            self._flows.delete(key)
            self._replies.delete(layout.FlowKey(src_ip=target.ip, dst_ip=key.src_ip,
                                                src_port=target.port, dst_port=key.src_port,
                                                protocol=key.protocol))
        return len(doomed)


def open_fast_path(instance: str, vip: str, port: int, protocol: Protocol, client_iface: str,
                   backends: Sequence[L4Backend], *, netns: str | None = None,
                   table_size: int = DEFAULT_TABLE_SIZE, udp_idle_timeout: float | None = None,
                   max_flows: int = DEFAULT_MAX_FLOWS) -> EbpfDataPlane | None:
    """A started fast path for ``vip:port``, or None after logging why the user-space data
    plane must serve it (eBPF unavailable here, or the start failed)."""
    status = availability()
    plane = EbpfDataPlane(instance, netns=netns)
    if status.available:
        try:
            plane.start(vip, port, protocol, client_iface, backends, table_size=table_size,
                        udp_idle_timeout=udp_idle_timeout, max_flows=max_flows)
            return plane
        except EbpfError as error:
            status = Availability(False, str(error), "start")
    log.warning("L4 %s:%d/%s: eBPF fast path unavailable (%s); falling back to the user-space "
                "data plane", vip, port, protocol, status.reason)
    return None

"""The eBPF fast path for L4 load balancing (issue 7): a TC program and its control plane.

``lb.bpf.c`` is the program (C source, compiled on first use by ``build``); ``dataplane``
loads, feeds and removes it (``EbpfDataPlane``, ``open_fast_path``) and ``host`` says whether
it can run here (``availability``). ``libbpf``/``maps``/``layout``/``tc`` are the ctypes
boundary to the kernel, ``netns`` runs netlink calls in another network namespace, and
``indexes`` and ``flowhash`` are the pure pieces (backend slots, the program's flow hash).
"""

from inferlane.l4.ebpf.dataplane import BackendCounters, EbpfDataPlane, open_fast_path
from inferlane.l4.ebpf.errors import BuildError, EbpfError, LibbpfError
from inferlane.l4.ebpf.host import Availability, availability

__all__ = ["Availability", "BackendCounters", "BuildError", "EbpfDataPlane", "EbpfError",
           "LibbpfError", "availability", "open_fast_path"]

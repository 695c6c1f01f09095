"""Compile ``lb.bpf.c`` with clang into a cached BPF object, at first use.

Where it sits: ``dataplane`` asks for ``compiled_object()`` before loading; ``availability``
asks ``toolchain_problem()`` to explain a missing toolchain. The repository holds only the C
source (package data); the object is built on the machine that runs it, against its own
kernel headers, and cached outside the repository: ``$XDG_CACHE_HOME/inferlane/ebpf`` (else
``~/.cache/...``), or a private ``inferlane-ebpf-UID`` directory under the temporary
directory when that is not writable. The cache key is a hash of the source, the compiler's
version and the flags, so an edited source or a new clang compiles again (and the objects of
earlier keys are removed).

The program uses no CO-RE relocations (only ``__sk_buff`` and packet bytes), so it needs
no ``vmlinux.h``: the UAPI headers (linux-libc-dev) and libbpf's ``bpf_helpers.h``
(libbpf-dev) are enough. ``INFERLANE_CLANG`` names another compiler.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sysconfig
import tempfile
from importlib import resources
from pathlib import Path

from inferlane.l4.ebpf.errors import BuildError

SOURCE_NAME = "lb.bpf.c"
INCLUDE_DIRS = (Path("/usr/include"), Path("/usr/local/include"))
COMPILE_TIMEOUT = 120.0  # seconds; a cold clang on a small machine takes a few


def clang_path() -> str | None:
    """The clang to use: ``$INFERLANE_CLANG`` or ``clang`` on PATH."""
    configured = os.environ.get("INFERLANE_CLANG")
    if configured:
        return shutil.which(configured)
    return shutil.which("clang")


def _multiarch_include() -> list[str]:
    # asm/types.h lives in /usr/include/<multiarch> on Debian; clang -target bpf does not
    # look there by itself.
    multiarch = sysconfig.get_config_var("MULTIARCH")
    found = [Path("/usr/include") / multiarch] if multiarch else []
    return [f"-idirafter{path}" for path in found if path.is_dir()]


def flags() -> list[str]:
    return ["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", *_multiarch_include()]


def toolchain_problem() -> str | None:
    """Why the program cannot be compiled here (what to install), or None."""
    if clang_path() is None:
        wanted = os.environ.get("INFERLANE_CLANG") or "clang"
        return (f"{wanted} is not installed (or not on PATH): install clang "
                "(Debian: apt-get install clang llvm libbpf-dev, or `make system-deps`)")
    if not any((directory / "bpf" / "bpf_helpers.h").is_file() for directory in INCLUDE_DIRS):
        return ("libbpf's headers (bpf/bpf_helpers.h) are not installed: install libbpf-dev "
                "(Debian: apt-get install libbpf-dev, or `make system-deps`)")
    return None


def source() -> bytes:
    return resources.files("inferlane.l4.ebpf").joinpath(SOURCE_NAME).read_bytes()


def _private_dir(path: Path) -> Path | None:
    """``path`` created (0700) and owned by us, or None when that cannot be had."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError:
        return None
    # The object is loaded into the kernel: never one someone else could have swapped.
    if info.st_uid != os.geteuid() or info.st_mode & 0o022 or not os.access(path, os.W_OK):
        return None
    return path


def cache_dir() -> Path:
    """Where compiled objects are kept (see the module docstring)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    for candidate in (Path(base) / "inferlane" / "ebpf",
                      Path(tempfile.gettempdir()) / f"inferlane-ebpf-{os.geteuid()}"):
        found = _private_dir(candidate)
        if found is not None:
            return found
    raise BuildError(f"no private writable cache directory for the BPF object (tried {base} "
                     f"and {tempfile.gettempdir()}); set XDG_CACHE_HOME")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BuildError(f"{argv[0]} could not run: {error}") from None


def compiled_object() -> Path:
    """The BPF object for the current source, compiled now unless cached."""
    problem = toolchain_problem()
    if problem:
        raise BuildError(problem)
    clang = clang_path()
    assert clang is not None
    version = _run([clang, "--version"]).stdout
    text = source()
    key = hashlib.sha256(b"\0".join([text, version.encode(), " ".join(flags()).encode()]))
    target = cache_dir() / f"lb-{key.hexdigest()[:16]}.o"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        source_path = Path(scratch) / SOURCE_NAME
        source_path.write_bytes(text)
        output = Path(scratch) / "lb.o"
        done = _run([clang, *flags(), "-c", str(source_path), "-o", str(output)])
        if done.returncode != 0:
            raise BuildError(f"clang could not compile {SOURCE_NAME} "
                             f"({done.returncode}):\n{done.stderr.strip()[-2000:]}")
        os.replace(output, target)  # atomic: a concurrent run sees all of it or none
    for stale in target.parent.glob("lb-*.o"):  # objects of earlier sources or compilers
        if stale != target:
            stale.unlink(missing_ok=True)
    return target

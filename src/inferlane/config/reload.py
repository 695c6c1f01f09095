"""Hot reload: watch the config file (and SIGHUP), validate, build, swap — or keep the old one.

A new file is parsed and validated off the event loop, built into a fresh snapshot, and handed
to ``apply`` in one step. Any rejection is logged with every issue and counted in
``inferlane_config_reloads_total{result="rejected"}``; the serving snapshot is untouched, so a
bad edit can never take the gateway down. Watching is a cheap ``stat`` poll (no extra
dependency, works on every filesystem, including Kubernetes ConfigMap symlink swaps).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from inferlane.config.loader import ConfigBundle, load_config_file
from inferlane.errors import ConfigError
from inferlane.metrics.gateway import GatewayMetrics
from inferlane.routing.router import GatewaySnapshot

log = logging.getLogger("inferlane.reload")

Signature = tuple[int, int, int] | None


def _signature(path: Path) -> Signature:
    try:
        stat = path.stat()  # follows symlinks, so a ConfigMap's ..data swap is seen
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class ConfigReloader:
    def __init__(
        self,
        path: str | os.PathLike[str],
        build: Callable[[ConfigBundle, int], GatewaySnapshot],
        apply: Callable[[GatewaySnapshot], None],
        metrics: GatewayMetrics,
        *,
        generation: int = 1,
        poll_interval: float = 1.0,
    ) -> None:
        """``build(bundle, generation)`` makes the new snapshot; ``apply`` puts it in service."""
        self._path = Path(path)
        self._build = build
        self._apply = apply
        self._metrics = metrics
        self._generation = generation
        self._poll_interval = poll_interval
        self._signature = _signature(self._path)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[bool]] = set()

    @property
    def generation(self) -> int:
        return self._generation

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="inferlane-config-watch")
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (NotImplementedError, RuntimeError, ValueError):
            log.debug("SIGHUP reload unavailable here (not the main thread or not POSIX)")

    async def stop(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading %s", self._path)
        task = asyncio.create_task(self.reload())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            signature = _signature(self._path)
            if signature == self._signature or signature is None:
                continue
            # Let a writer finish: reload only once the file stops changing.
            await asyncio.sleep(min(0.05, self._poll_interval))
            if _signature(self._path) != signature:
                continue
            await self.reload()

    async def reload(self) -> bool:
        """Reload now; True when the new config is serving."""
        async with self._lock:
            self._signature = _signature(self._path)
            try:
                bundle = await asyncio.to_thread(load_config_file, self._path)
                snapshot = self._build(bundle, self._generation + 1)
            except ConfigError as error:
                self._metrics.config_reloads.labels("rejected").inc()
                log.error(
                    "config reload rejected; still serving generation %d:\n%s",
                    self._generation, error,
                )
                return False
            for warning in bundle.warnings:
                log.warning("%s", warning)
            self._generation += 1
            self._apply(snapshot)
            self._metrics.config_reloads.labels("success").inc()
            log.info("config generation %d serving (from %s)", self._generation, self._path)
            return True

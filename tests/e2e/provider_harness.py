"""Start ``fake_providers.py`` (fake OpenAI / Azure OpenAI / Anthropic) for end-to-end tests.

``FakeProvider`` is a conftest ``Process``: a real subprocess on 127.0.0.1, stopped by PID
(SIGTERM, then SIGKILL). The fake binds port 0 and prints its URL, so there is no race for a
port. With ``tls=True`` it serves HTTPS with a certificate for 127.0.0.1/localhost signed by a
throwaway CA (``trustme``) whose PEM is written to ``ca_file``.

``Stack`` has no public way to adopt another process, so fakes are stopped by whoever starts
them: use ``start_fake_provider`` as a context manager in a (module-scoped) fixture, or the
``fake_provider_factory`` fixture, which stops every fake it started at teardown. Import the
fixture explicitly: ``fake_provider_factory = provider_harness.fake_provider_factory``.
"""

from __future__ import annotations

import json
import re
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import pytest
import trustme

from .conftest import HOST, Process

FAKE_SCRIPT = Path(__file__).with_name("fake_providers.py")
_LISTENING = re.compile(r"^fake provider \S+ listening on (https?://\S+):(\d+)$", re.M)


class FakeProvider(Process):
    """One fake-provider process. ``url`` is the base of all three APIs (no ``/v1``)."""

    def __init__(self, log_dir: Path, *, name: str = "fake", api_key: str | None = None,
                 tls: bool = False) -> None:
        argv = [sys.executable, str(FAKE_SCRIPT), "--host", HOST, "--port", "0", "--name", name]
        if api_key is not None:
            argv += ["--api-key", api_key]
        super().__init__(f"fake-{name}", argv, log_dir)
        self.provider_name = name
        self.api_key = api_key
        self.port = 0
        self.ca_file: Path | None = None
        if tls:
            stem = self.stdout_path.stem
            ca = trustme.CA()
            self.ca_file = log_dir / f"{stem}-ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_file))
            server_pem = log_dir / f"{stem}-server.pem"  # private key + certificate chain
            ca.issue_cert(HOST, "localhost").private_key_and_cert_chain_pem.write_to_path(
                str(server_pem))
            self.argv += ["--tls-cert", str(server_pem)]

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://{HOST}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``openai.OpenAI``; Azure and Anthropic clients take ``url``."""
        return f"{self.url}/v1"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting this fake's CA (None without TLS); pass it as ``verify``."""
        return None if self.ca_file is None else ssl.create_default_context(
            cafile=str(self.ca_file))

    def start(self) -> None:
        super().start()
        self.port = self.wait_until(self._listening_port, f"{self.name} to listen")
        self.wait_until(self._healthy, f"{self.name} /health")

    def __enter__(self) -> FakeProvider:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- the control API ------------------------------------------------------------------------

    def script(self, *actions: Mapping[str, Any]) -> None:
        """Queue ``actions``; each later inference request pops one (FIFO)."""
        self._call("POST", "/_fake/script", {"actions": [dict(a) for a in actions]})

    def clear(self) -> None:
        """Forget queued actions and recorded requests."""
        self._call("DELETE", "/_fake/script")
        self._call("DELETE", "/_fake/requests")

    def requests(self) -> list[dict[str, Any]]:
        """Inference requests received, oldest first: path, query, headers (lower-case), body."""
        recorded: list[dict[str, Any]] = self._call("GET", "/_fake/requests")["requests"]
        return recorded

    def _call(self, method: str, path: str, payload: object = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.ssl_context()) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as error:
            with error:
                raise AssertionError(f"{method} {path} answered {error.code}: "
                                     f"{error.read().decode(errors='replace')}") from None

    def _listening_port(self) -> int | None:
        match = _LISTENING.search(self.stdout())
        return int(match.group(2)) if match else None

    def _healthy(self) -> bool | None:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=5,
                                        context=self.ssl_context()) as reply:
                return reply.status == 200 or None
        except (urllib.error.URLError, OSError):
            return None


def start_fake_provider(log_dir: Path, *, name: str = "fake", api_key: str | None = None,
                        tls: bool = False) -> FakeProvider:
    """A started fake; stop it (``with start_fake_provider(...) as fake:`` does)."""
    fake = FakeProvider(log_dir, name=name, api_key=api_key, tls=tls)
    try:
        fake.start()
    except BaseException:
        fake.stop()
        raise
    return fake


class FakeProviderFactory(Protocol):
    def __call__(self, *, name: str = ..., api_key: str | None = ...,
                 tls: bool = ...) -> FakeProvider: ...


@pytest.fixture
def fake_provider_factory(tmp_path: Path) -> Iterator[FakeProviderFactory]:
    """Starts fakes for one test; all of them are stopped at teardown."""
    started: list[FakeProvider] = []

    def start(*, name: str = "fake", api_key: str | None = None,
              tls: bool = False) -> FakeProvider:
        fake = FakeProvider(tmp_path, name=name, api_key=api_key, tls=tls)
        started.append(fake)
        fake.start()
        return fake

    try:
        yield start
    finally:
        for fake in reversed(started):
            fake.stop()

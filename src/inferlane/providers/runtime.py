"""A Provider resolved for serving: address, TLS context, credential and dialect settings.

Built once per config generation (``build_provider``): the credential is read from its
environment variable or file here, so a missing key is a config error at start or reload, not
a surprise on the first request. The key lives in a ``Secret`` whose ``repr`` and ``str`` never
show it, so it cannot leak through a log line, an exception message or a debug dump.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from inferlane.config.resources import Provider, parse_duration
from inferlane.routing.backends import BackendRef, provider_ref

Dialect = Literal["openai", "anthropic"]


class Secret:
    """A credential that prints as ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class ProviderConfigError(ValueError):
    """A provider cannot be built: ``field`` is the spec path, the message says why."""

    def __init__(self, provider: str, field_path: str, message: str) -> None:
        super().__init__(message)
        self.provider = provider
        self.field_path = field_path


@dataclass(frozen=True, slots=True)
class ProviderRuntime:
    key: str  # "namespace/name"
    type: str  # openai | azure-openai | anthropic | openai-compatible
    host: str
    port: int
    base_path: str  # URL path prefix, no trailing slash ("" or "/v1")
    tls: ssl.SSLContext | None = field(compare=False)
    credential: Secret | None
    model_name_override: str | None = None
    context_window: int | None = None
    connect_timeout: float = 10.0
    request_timeout: float | None = None
    headers: tuple[tuple[str, str], ...] = ()
    azure_api_version: str | None = None
    azure_deployment: str | None = None
    anthropic_version: str = "2023-06-01"
    anthropic_max_tokens: int = 4096

    @property
    def ref(self) -> BackendRef:
        return provider_ref(self.key)

    @property
    def dialect(self) -> Dialect:
        return "anthropic" if self.type == "anthropic" else "openai"

    @property
    def address(self) -> str:
        """``host:port`` as shown in logs and errors (never with credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def host_header(self) -> str:
        default = 443 if self.tls is not None else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def sampling_parameters(self) -> bool:
        """Whether temperature/top_p may be sent (Anthropic removed them in 2026-10-21)."""
        return self.anthropic_version < "2026-10-21"


def read_secret(provider: Provider) -> Secret | None:
    source = provider.spec.credentials
    key = f"{provider.namespace}/{provider.name}"
    if source is None:
        return None
    if source.from_env is not None:
        value = (os.environ.get(source.from_env) or "").strip()
        if not value:
            raise ProviderConfigError(key, "spec.credentials.fromEnv",
                                      f"environment variable {source.from_env} is not set or "
                                      "empty")
        return Secret(value)
    assert source.from_file is not None
    try:
        with open(source.from_file, encoding="utf-8") as handle:
            value = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ProviderConfigError(key, "spec.credentials.fromFile",
                                  f"cannot read {source.from_file}: {reason}") from None
    if not value:
        raise ProviderConfigError(key, "spec.credentials.fromFile",
                                  f"{source.from_file} is empty")
    return Secret(value)


def tls_context(provider: Provider) -> ssl.SSLContext:
    """Verification on by default (system CAs or ``caFile``); HTTP/1.1 offered by ALPN."""
    settings = provider.spec.tls
    key = f"{provider.namespace}/{provider.name}"
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ProviderConfigError(key, "spec.tls.caFile",
                                  f"cannot load {settings.ca_file}: {exc}") from None
    if settings.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def build_provider(provider: Provider) -> ProviderRuntime:
    spec = provider.spec
    parts = urlsplit(spec.url)
    https = parts.scheme == "https"
    assert parts.hostname is not None  # checked by the model
    timeouts = spec.timeouts
    return ProviderRuntime(
        key=f"{provider.namespace}/{provider.name}",
        type=spec.type,
        host=parts.hostname,
        port=parts.port or (443 if https else 80),
        base_path=parts.path.rstrip("/"),
        tls=tls_context(provider) if https else None,
        credential=read_secret(provider),
        model_name_override=spec.model_name_override,
        context_window=spec.context_window,
        connect_timeout=parse_duration(timeouts.connect) or 10.0,
        request_timeout=(parse_duration(timeouts.request) or None) if timeouts.request else None,
        headers=tuple((h.name.lower(), h.value) for h in spec.headers),
        azure_api_version=spec.azure.api_version if spec.azure else None,
        azure_deployment=spec.azure.deployment if spec.azure else None,
        anthropic_version=spec.anthropic.version if spec.anthropic else "2023-06-01",
        anthropic_max_tokens=spec.anthropic.default_max_tokens if spec.anthropic else 4096,
    )

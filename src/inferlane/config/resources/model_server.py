"""The ``ModelServer`` kind (inferlane.dev/v1alpha1, our extension): one model-server process.

Outside Kubernetes there are no Pods for an InferencePool selector to find, so each server
is declared as a ModelServer: its labels are what pool selectors match, ``spec.address`` is
where it listens. ``engine`` picks the metrics dialect (vLLM, SGLang, TensorRT-LLM) scraped
from ``metricsPath``; ``models`` is informational (served on ``/v1/models``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, field_validator

from inferlane.config.resources.meta import Problems, Resource, StrictModel

_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?")
_BRACKETED_RE = re.compile(r"\[([^\]]*)\](?::([^:]*))?")


def parse_address(address: str) -> tuple[str, int | None]:
    """``"host:port"``, ``"host"`` or ``"[v6]:port"`` -> ``(host, port)``; host has no brackets.

    Raises ValueError with a message saying what is wrong.
    """
    if "://" in address:
        raise ValueError(f'"{address}": give host:port without a scheme, e.g. "10.0.0.5:8000"')
    port_text: str | None
    bracketed = _BRACKETED_RE.fullmatch(address)
    if bracketed:
        host, port_text = bracketed.group(1), bracketed.group(2)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f'"{address}": "{host}" inside [] is not an IPv6 address') from None
    elif address.count(":") > 1:
        raise ValueError(f'"{address}": put IPv6 addresses in brackets, e.g. "[::1]:8000"')
    else:
        host, colon, port_text = address.partition(":")
        port_text = port_text if colon else None
        _check_host(address, host)
    return host.lower(), _parse_port(address, port_text)


def _check_host(address: str, host: str) -> None:
    if not host:
        raise ValueError(f'"{address}": the host is missing')
    if all(part.isdigit() for part in host.split(".")):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f'"{address}": "{host}" is not an IPv4 address') from None
        return
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(len(x) <= 63 and _HOST_LABEL_RE.fullmatch(x) for x in labels):
        raise ValueError(f'"{address}": "{host}" is not a valid host name or IP address')


def _parse_port(address: str, text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f'"{address}": the port must be a number between 1 and 65535')
    return int(text)


class ModelServerSpec(StrictModel):
    """Where a model server listens and what it is."""

    address: str = Field(
        description='"host:port", "host" or "[ipv6]:port". Without a port the server is '
                    "reached on each targetPort of the pools that select it.")
    engine: Literal["vllm", "sglang", "trtllm"] = Field(
        "vllm", description="Server software; selects the metric names scraped.")
    models: list[str] = Field(default_factory=list,
                              description="Model (and LoRA adapter) names it serves; "
                                          "informational, listed on /v1/models.")
    metrics_path: str = Field("/metrics", alias="metricsPath",
                              description="Path of the Prometheus metrics endpoint.")
    weight: int = Field(1, ge=0, le=1000,
                        description="Relative share of new requests; 0 drains the server "
                                    "(in-flight requests finish, no new ones are sent).")

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        parse_address(value)
        return value

    @field_validator("models")
    @classmethod
    def _check_models(cls, models: list[str]) -> list[str]:
        problems = Problems()
        for i, name in enumerate(models):
            if not name.strip():
                problems.add((i,), "model names must not be empty")
            elif name in models[:i]:
                problems.add((i,), f'model "{name}" is listed twice')
        problems.raise_if_any()
        return models

    @field_validator("metrics_path")
    @classmethod
    def _check_metrics_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f'"{value}" must start with "/"')
        return value

    @property
    def host(self) -> str:
        """Host name or IP, lowercased, without IPv6 brackets."""
        return parse_address(self.address)[0]

    @property
    def port(self) -> int | None:
        return parse_address(self.address)[1]


class ModelServer(Resource):
    """A model-server process (stands in for a Pod outside Kubernetes)."""

    api_version: Literal["inferlane.dev/v1alpha1"] = Field(alias="apiVersion",
                                                           description="API group and version.")
    kind: Literal["ModelServer"] = Field(description="Resource kind.")
    spec: ModelServerSpec = Field(description="Address, engine and models.")

    @property
    def host(self) -> str:
        return self.spec.host

    @property
    def port(self) -> int | None:
        return self.spec.port

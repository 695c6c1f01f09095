"""The ``BackendSet`` kind (inferlane.dev/v1alpha1, our extension): the backends of an L4 route.

Upstream, a TCPRoute or UDPRoute forwards to Kubernetes Services, whose endpoints Kubernetes
maintains. Outside Kubernetes there are no Services, so a BackendSet lists the endpoints
itself (``host:port`` with a weight), the way ``ModelServer`` stands in for Pods. A route
names one as ``{group: inferlane.dev, kind: BackendSet, name}``; an upstream-style
``{kind: Service, name, port}`` reference resolves to the BackendSet of the same name and
namespace, so pasted manifests only need the set declared.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from inferlane.config.resources.meta import PortNumber, Problems, Resource, StrictModel
from inferlane.config.resources.model_server import parse_address


class BackendEndpoint(StrictModel):
    """One backend address and its share of new flows."""

    address: str = Field(
        description='"host:port", "[ipv6]:port", or a host alone when the set has a ``port``.')
    weight: int = Field(1, ge=0, le=1000,
                        description="Relative share of new flows; 0 drains the endpoint "
                                    "(existing flows stay, no new ones are sent).")

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        parse_address(value)
        return value

    @property
    def host(self) -> str:
        """Host name, or IP in its canonical form (``fe80::1``, no brackets); lowercased."""
        host = parse_address(self.address)[0]
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            return host

    @property
    def port(self) -> int | None:
        """The port written in ``address``, if any."""
        return parse_address(self.address)[1]


class BackendSetSpec(StrictModel):
    """The endpoints of the set."""

    endpoints: list[BackendEndpoint] = Field(
        min_length=1, max_length=1024,
        description="Backends; the same address listed twice counts once, with the weights "
                    "added (and a warning).")
    port: PortNumber | None = Field(
        None, description="Port of the endpoints whose address has none.")

    @model_validator(mode="after")
    def _check(self) -> BackendSetSpec:
        problems = Problems()
        if self.port is None:
            for i, endpoint in enumerate(self.endpoints):
                if endpoint.port is None:
                    problems.add(("endpoints", i, "address"),
                                 f'"{endpoint.address}" has no port: write "host:port" or set '
                                 "spec.port for the endpoints without one")
        problems.raise_if_any()
        return self


class BackendSet(Resource):
    """Endpoints that TCPRoutes and UDPRoutes forward to (stands in for a Service).

    A route's backendRef ``{group: inferlane.dev, kind: BackendSet, name}`` names a set; so
    does an upstream ``{group: "", kind: Service, name}`` reference, which resolves to the
    BackendSet of that name (in the reference's namespace). A backendRef's ``port`` is not
    used: the endpoints carry their ports (``spec.port`` fills in the missing ones). Weights:
    with one backendRef the endpoint weights are used as written; with several, each
    backendRef's share of new flows (its weight over the sum) is split among its set's
    endpoints by their weights. A HealthCheckPolicy may target a set (``kind: BackendSet``):
    unhealthy endpoints get no new flows.
    """

    api_version: Literal["inferlane.dev/v1alpha1"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["BackendSet"] = Field(description="Resource kind.")
    spec: BackendSetSpec = Field(description="Endpoints.")

    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of each endpoint, in order (duplicates kept)."""
        return [(e.host, e.port if e.port is not None else self._default_port())
                for e in self.spec.endpoints]

    def _default_port(self) -> int:
        port = self.spec.port
        assert port is not None, "validated: an endpoint without a port needs spec.port"
        return port

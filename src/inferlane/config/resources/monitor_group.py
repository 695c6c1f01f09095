"""The ``MonitorGroup`` kind (inferlane.dev/v1alpha1, our extension): monitors that vote.

Cloudflare's monitor groups: every enabled member probes each endpoint; a failing
``mustBeHealthy`` member makes the endpoint unhealthy at once, ``monitoringOnly`` members are
reported but do not vote, and otherwise the endpoint is unhealthy when more than
``quorumPercent`` of the voting members with a verdict say so (``health.verdicts``).
Members name Monitors in the group's namespace; that they exist is a cross-resource check.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from inferlane.config.resources.meta import ObjectName, Problems, Resource, StrictModel


class MonitorReference(StrictModel):
    """A Monitor in the referrer's namespace."""

    group: Literal["inferlane.dev"] = Field("inferlane.dev", description="API group.")
    kind: Literal["Monitor"] = Field("Monitor", description="Monitor.")
    name: ObjectName = Field(description="Name of the Monitor.")


class MonitorGroupMember(StrictModel):
    """One monitor of the group and how its verdict counts."""

    monitor_ref: MonitorReference = Field(alias="monitorRef", description="The Monitor.")
    enabled: bool = Field(True, description="false: the member does not probe at all.")
    monitoring_only: bool = Field(False, alias="monitoringOnly",
                                  description="Probes and reports, but does not vote.")
    must_be_healthy: bool = Field(False, alias="mustBeHealthy",
                                  description="Its failure alone makes the endpoint unhealthy.")

    @model_validator(mode="after")
    def _check(self) -> MonitorGroupMember:
        problems = Problems()
        if self.monitoring_only and self.must_be_healthy:
            problems.add((), "monitoringOnly and mustBeHealthy exclude each other: set at most "
                             "one")
        problems.raise_if_any()
        return self


class MonitorGroupSpec(StrictModel):
    """Members and the share of them that must fail."""

    quorum_percent: int = Field(
        50, alias="quorumPercent", ge=0, le=99,
        description="An endpoint is unhealthy when more than this percent of the voting "
                    "members with a verdict say so (50: a majority; a tie stays healthy).")
    members: list[MonitorGroupMember] = Field(min_length=1, max_length=16,
                                              description="The monitors, each at most once.")

    @model_validator(mode="after")
    def _check(self) -> MonitorGroupSpec:
        problems = Problems()
        seen: dict[str, int] = {}
        for i, member in enumerate(self.members):
            name = member.monitor_ref.name
            first = seen.setdefault(name, i)
            if first != i:
                problems.add(("members", i, "monitorRef", "name"),
                             f'monitor "{name}" is already members[{first}]: list each '
                             "monitor once")
        problems.raise_if_any()
        return self


class MonitorGroup(Resource):
    """Several Monitors whose verdicts combine into one (Cloudflare monitor group rules)."""

    api_version: Literal["inferlane.dev/v1alpha1"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["MonitorGroup"] = Field(description="Resource kind.")
    spec: MonitorGroupSpec = Field(description="Members and quorum.")

"""The health report: pool → endpoint → member → region, as JSON for ``GET /admin/health``.

Read-only over a ``HealthTracker``; times are "seconds ago" (``ago``) because the tracker's
clock is monotonic and means nothing outside this process. ``inferlane health`` renders the
same document as a table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inferlane.health.verdicts import Health

if TYPE_CHECKING:
    from inferlane.health.tracker import HealthTracker


def _ago(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(now - at, 0.0), 3)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def build_report(tracker: HealthTracker, now: float) -> dict[str, Any]:
    regions = {
        region: {"lastReportAgo": _ago(now, seen), "stale": region in tracker.stale_regions()}
        for region, seen in sorted(tracker.region_seen().items())
    }
    pools = []
    for key in tracker.pools():
        found = tracker.pool_state(key)
        if found is None:
            continue
        watched, endpoint_states = found
        settings = watched.settings
        view = tracker.view(key, now)
        outlier = tracker.outlier(key)
        endpoints = []
        for endpoint in watched.endpoints:
            state = endpoint_states[endpoint.address]
            members = []
            verdicts = dict(state.members)
            for group_member in settings.members:
                member, monitor = group_member.member, group_member.monitor
                verdict = verdicts.get(member)
                regions_of_member = []
                for region in settings.regions:
                    series = tracker.series(monitor.key, endpoint.address, region)
                    last = series.last if series is not None else None
                    regions_of_member.append({
                        "region": region,
                        "verdict": str(series.verdict if series is not None else Health.UNKNOWN),
                        "lastProbeAgo": _ago(now, last.at if last is not None else None),
                        "ok": last.ok if last is not None else None,
                        "rtt": _rounded(last.rtt if last is not None else None),
                        "reason": last.reason if last is not None else "not probed yet",
                        "stale": (last is not None
                                  and now - last.at > settings.region_timeout),
                    })
                role = ("disabled" if not member.enabled else "critical" if member.must_be_healthy
                        else "monitoring-only" if member.monitoring_only else "voting")
                members.append({
                    "monitor": monitor.key, "type": str(monitor.type), "role": role,
                    "verdict": str(verdict.verdict if verdict is not None else Health.UNKNOWN),
                    "reason": verdict.reason if verdict is not None else "not evaluated yet",
                    "staleRegions": list(verdict.stale_regions) if verdict is not None else [],
                    "regions": regions_of_member,
                })
            ejected_until = (outlier.ejected_until(endpoint.address, now)
                             if outlier is not None else None)
            routable_weight = None
            if view is None:
                routable_weight = 1.0
            elif endpoint.address in view.weights:
                routable_weight = round(view.weights[endpoint.address], 3)
            endpoints.append({
                "endpoint": endpoint.address,
                "verdict": str(state.verdict.verdict),
                "reason": state.verdict.reason,
                "routable": routable_weight is not None,
                "weight": routable_weight,
                "configuredWeight": endpoint.weight,
                "draining": state.admin_drain or endpoint.weight == 0,
                "ejected": ejected_until is not None,
                "ejectedForSeconds": (None if ejected_until is None
                                      else round(max(ejected_until - now, 0.0), 3)),
                "members": members,
            })
        routable = sum(1 for e in endpoints if e["routable"])
        pools.append({
            "pool": key,
            "source": settings.source or "passive only",
            "regions": list(settings.regions),
            "critical": tracker.critical(key),
            "panic": view.panic if view is not None else False,
            "routable": routable,
            "total": len(endpoints),
            "minHealthy": settings.min_healthy,
            "latency": _rounded(tracker.latency(key)),
            "passive": settings.passive is not None,
            "endpoints": endpoints,
        })
    return {"region": tracker.own_region, "generation": tracker.generation,
            "regions": regions, "pools": pools}


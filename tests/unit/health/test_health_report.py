"""``GET /admin/health``'s document, built from a HealthTracker driven with a fake clock."""

from __future__ import annotations

import json

from inferlane.health.monitors import HttpCheck, MonitorSpec, MonitorType, TcpCheck
from inferlane.health.outlier import OutlierConfig
from inferlane.health.settings import GroupMember, PoolHealthSettings
from inferlane.health.tracker import HealthTracker, WatchedEndpoint, WatchedPool, agent_result_time
from inferlane.health.verdicts import Member, ProbeResult, Thresholds

POOL = "default/chat"
HTTP = MonitorSpec(key="default/http", type=MonitorType.HTTP, http=HttpCheck(), interval=1,
                   timeout=0.5, thresholds=Thresholds(1, 1))
TCP = MonitorSpec(key="default/tcp", type=MonitorType.TCP, tcp=TcpCheck(), interval=1,
                  timeout=0.5, thresholds=Thresholds(1, 1))


def endpoint(i: int, weight: int = 1) -> WatchedEndpoint:
    return WatchedEndpoint(address=f"10.0.0.{i}:8000", host=f"10.0.0.{i}", port=8000,
                           weight=weight)


E1, E2, E3, E4 = (endpoint(i).address for i in (1, 2, 3, 4))


def not_probed(region: str) -> dict[str, object]:
    return {"region": region, "verdict": "unknown", "lastProbeAgo": None, "ok": None,
            "rtt": None, "reason": "not probed yet", "stale": False}


def test_report_of_a_two_member_group_over_two_regions() -> None:
    settings = PoolHealthSettings(
        pool=POOL, source="MonitorGroup default/group",
        members=(GroupMember(Member(HTTP.key), HTTP),
                 GroupMember(Member(TCP.key, monitoring_only=True), TCP)),
        regions=("gateway", "eu"), min_healthy=2, panic_threshold_percent=30.0,
        passive=OutlierConfig(consecutive_errors=1, base_ejection=10.0), slow_start=0.0)
    tracker = HealthTracker(own_region="gateway")
    tracker.configure([WatchedPool(settings, (endpoint(1), endpoint(2, weight=2),
                                              endpoint(3, weight=2), endpoint(4, weight=0)))],
                      0.0)
    tracker.record(HTTP.key, E1, "gateway", ProbeResult(True, 10.0, rtt=0.012), 10.0)
    tracker.record(HTTP.key, E1, "eu", ProbeResult(True, agent_result_time(12.0, 1.5),
                                                   rtt=0.034), 12.0)
    tracker.record(TCP.key, E1, "gateway",
                   ProbeResult(False, 11.0, reason="connection refused"), 11.0)
    tracker.record(HTTP.key, E2, "gateway", ProbeResult(False, 11.0, reason="HTTP 503"), 11.0)
    tracker.record_request(POOL, E3, 15.0, ok=False)  # ejected until 25

    report = tracker.report(20.0)

    json.dumps(report)  # JSON-able as it is
    assert report == {
        "region": "gateway",
        "generation": 1,
        "regions": {"eu": {"lastReportAgo": 8.0, "stale": False}},
        "pools": [{
            "pool": POOL,
            "source": "MonitorGroup default/group",
            "regions": ["gateway", "eu"],
            "critical": True,  # 1 routable, minimum 2
            "panic": False,  # 1 of 3 non-draining is not below 30 %
            "routable": 1,
            "total": 4,
            "minHealthy": 2,
            "latency": 0.023,  # voting member only: (0.012 + 0.034) / 2
            "passive": True,
            "endpoints": [
                {
                    "endpoint": E1, "verdict": "healthy",
                    "reason": "0 of 1 voting members unhealthy; "
                              "monitoring-only member default/tcp unhealthy",
                    "routable": True, "weight": 0.5, "configuredWeight": 1,
                    "draining": False, "ejected": False, "ejectedForSeconds": None,
                    "members": [
                        {"monitor": HTTP.key, "type": "http", "role": "voting",
                         "verdict": "healthy", "reason": "0 of 2 regions unhealthy",
                         "staleRegions": [],
                         "regions": [
                             {"region": "gateway", "verdict": "healthy", "lastProbeAgo": 10.0,
                              "ok": True, "rtt": 0.012, "reason": "", "stale": False},
                             {"region": "eu", "verdict": "healthy", "lastProbeAgo": 9.5,
                              "ok": True, "rtt": 0.034, "reason": "", "stale": False},
                         ]},
                        {"monitor": TCP.key, "type": "tcp", "role": "monitoring-only",
                         "verdict": "unhealthy", "reason": "1 of 1 regions unhealthy",
                         "staleRegions": [],
                         "regions": [
                             {"region": "gateway", "verdict": "unhealthy", "lastProbeAgo": 9.0,
                              "ok": False, "rtt": None, "reason": "connection refused",
                              "stale": False},
                             not_probed("eu"),
                         ]},
                    ],
                },
                {
                    "endpoint": E2, "verdict": "unhealthy",
                    "reason": "1 of 1 voting members unhealthy",
                    "routable": False, "weight": None, "configuredWeight": 2,
                    "draining": False, "ejected": False, "ejectedForSeconds": None,
                    "members": [
                        {"monitor": HTTP.key, "type": "http", "role": "voting",
                         "verdict": "unhealthy", "reason": "1 of 1 regions unhealthy",
                         "staleRegions": [],
                         "regions": [
                             {"region": "gateway", "verdict": "unhealthy", "lastProbeAgo": 9.0,
                              "ok": False, "rtt": None, "reason": "HTTP 503", "stale": False},
                             not_probed("eu"),
                         ]},
                        {"monitor": TCP.key, "type": "tcp", "role": "monitoring-only",
                         "verdict": "unknown", "reason": "no fresh region vote",
                         "staleRegions": [],
                         "regions": [not_probed("gateway"), not_probed("eu")]},
                    ],
                },
                {
                    "endpoint": E3, "verdict": "unknown",
                    "reason": "no voting member has a verdict yet",
                    "routable": False, "weight": None, "configuredWeight": 2,
                    "draining": False, "ejected": True, "ejectedForSeconds": 5.0,
                    "members": [
                        {"monitor": m.key, "type": str(m.type), "role": role,
                         "verdict": "unknown", "reason": "no fresh region vote",
                         "staleRegions": [],
                         "regions": [not_probed("gateway"), not_probed("eu")]}
                        for m, role in ((HTTP, "voting"), (TCP, "monitoring-only"))
                    ],
                },
                {
                    "endpoint": E4, "verdict": "unknown",
                    "reason": "no voting member has a verdict yet",
                    "routable": False, "weight": None, "configuredWeight": 0,
                    "draining": True, "ejected": False, "ejectedForSeconds": None,
                    "members": [
                        {"monitor": m.key, "type": str(m.type), "role": role,
                         "verdict": "unknown", "reason": "no fresh region vote",
                         "staleRegions": [],
                         "regions": [not_probed("gateway"), not_probed("eu")]}
                        for m, role in ((HTTP, "voting"), (TCP, "monitoring-only"))
                    ],
                },
            ],
        }],
    }


def test_report_roles_stale_regions_and_fast_path() -> None:
    critical, disabled = (MonitorSpec(key=f"default/{name}", type=MonitorType.HTTP,
                                      http=HttpCheck(), interval=1, timeout=0.5,
                                      thresholds=Thresholds(1, 1))
                          for name in ("critical", "disabled"))
    settings = PoolHealthSettings(
        pool=POOL, source="MonitorGroup default/group", regions=("eu",), region_timeout=10.0,
        members=(GroupMember(Member(critical.key, must_be_healthy=True), critical),
                 GroupMember(Member(disabled.key, enabled=False), disabled)))
    tracker = HealthTracker(own_region="gateway")
    tracker.configure([WatchedPool(settings, (endpoint(1),)),
                       WatchedPool(PoolHealthSettings(pool="default/passive"), (endpoint(2),))],
                      0.0)
    tracker.record(critical.key, E1, "eu", ProbeResult(True, 0.0, rtt=0.01), 0.0)
    tracker.tick(11.0)  # eu goes stale

    report = tracker.report(11.0)

    assert report["regions"] == {"eu": {"lastReportAgo": 11.0, "stale": True}}
    assert report["generation"] == 1
    chat, passive = report["pools"]
    assert (chat["routable"], chat["critical"], chat["panic"]) == (1, False, False)
    (entry,) = chat["endpoints"]
    assert (entry["verdict"], entry["routable"], entry["weight"]) == ("unknown", True, 1.0)
    roles = [(m["monitor"], m["role"], m["staleRegions"]) for m in entry["members"]]
    assert roles == [(critical.key, "critical", ["eu"]), (disabled.key, "disabled", [])]
    stale_region = entry["members"][0]["regions"][0]
    assert (stale_region["verdict"], stale_region["lastProbeAgo"], stale_region["stale"]) == (
        "healthy", 11.0, True)
    assert passive["source"] == "passive only"
    assert passive["passive"] is True
    assert passive["latency"] is None
    assert [(e["endpoint"], e["verdict"], e["reason"], e["members"]) for e in
            passive["endpoints"]] == [(E2, "unknown", "no monitor", [])]

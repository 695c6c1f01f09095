"""Prometheus view of the endpoint data layer, read at scrape time (no hot-path cost).

``inferlane_endpoint_stale`` and ``inferlane_endpoint_in_flight_requests`` per endpoint, and
the scraper's totals. Collected from the store on each ``GET /metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inferlane.endpoints import EndpointStore, MetricsScraper


class EndpointCollector(Collector):
    def __init__(self, store: EndpointStore, scraper: Callable[[], MetricsScraper | None],
                 clock: Callable[[], float]) -> None:
        self._store = store
        self._scraper = scraper
        self._clock = clock

    def describe(self) -> list[Metric]:
        return []  # collect() is cheap but needs a running gateway; skip describe-time calls

    def collect(self) -> Iterator[Metric]:
        stale = GaugeMetricFamily(
            "inferlane_endpoint_stale",
            "1 when the endpoint's metrics are missing or older than the staleness threshold "
            "(the scheduler treats it as saturated).",
            labels=["endpoint"],
        )
        in_flight = GaugeMetricFamily(
            "inferlane_endpoint_in_flight_requests",
            "Requests the gateway has sent to the endpoint and not yet seen finish.",
            labels=["endpoint"],
        )
        now = self._clock()
        for endpoint in self._store.endpoints():
            state = self._store.state(endpoint)
            stale.add_metric([endpoint.address], 1.0 if self._store.is_stale(endpoint, now) else 0)
            in_flight.add_metric([endpoint.address], state.in_flight_requests)
        yield stale
        yield in_flight
        scraper = self._scraper()
        if scraper is not None:
            yield CounterMetricFamily("inferlane_metrics_scrapes",
                                      "Model-server metrics scrapes attempted.",
                                      value=scraper.scrapes_total)
            yield CounterMetricFamily("inferlane_metrics_scrape_errors",
                                      "Model-server metrics scrapes that failed.",
                                      value=scraper.scrape_errors_total)

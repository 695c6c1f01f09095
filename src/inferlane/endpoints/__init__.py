"""The endpoint data layer: what each model-server endpoint reports and what the gateway knows.

Sits beside the request path, feeding the scheduler: ``MetricsScraper`` (I/O) polls every
endpoint's ``/metrics``, ``parse_metrics`` (pure) reads the engine's metric names into
``ServerMetrics``, and ``EndpointStore`` (sans-IO) keeps one ``EndpointState`` per endpoint,
together with the data plane's in-flight counts and learned token rates. Pickers read the states.
"""

from inferlane.endpoints.parse import ENGINES, EngineName, parse_metrics
from inferlane.endpoints.scraper import MetricsScraper
from inferlane.endpoints.store import EndpointStore
from inferlane.errors import MetricsParseError

__all__ = [
    "ENGINES",
    "EndpointStore",
    "EngineName",
    "MetricsParseError",
    "MetricsScraper",
    "parse_metrics",
]

"""``EndpointStore``: the one place that holds what we know about each model-server endpoint.

Sans-IO: the scraper writes scrapes into it, the data plane writes dispatches and completions, the
scheduler reads ``EndpointState`` objects out of it; every time is passed in by the caller.

States are keyed by ``Endpoint.address`` (``host:port``), not by the ``Endpoint`` value, so the same
server listed by the old and the new config after a reload is one state: its last scrape, its
in-flight counts and its learned rates survive, and a request dispatched before the reload is
released against the same counters after it. ``sync`` drops the states of servers no longer
listed; late events for a dropped server (a completion, a scrape that was already running) are
ignored rather than resurrecting it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from inferlane.scheduling.interfaces import Endpoint
from inferlane.scheduling.types import EndpointState, ServerMetrics

# Prefill work (tokens) below which a first token teaches nothing about the prefill rate.
MIN_PREFILL_SAMPLE_TOKENS = 256


class EndpointStore:
    """One ``EndpointState`` per endpoint address; see the module docstring."""

    def __init__(self, *, stale_after: float = 2.0, ewma_alpha: float = 0.2) -> None:
        if stale_after <= 0:
            raise ValueError(f"stale_after must be > 0 seconds, got {stale_after}")
        if not 0 < ewma_alpha <= 1:
            raise ValueError(f"ewma_alpha must be in (0, 1], got {ewma_alpha}")
        self.stale_after = stale_after
        self.ewma_alpha = ewma_alpha
        self._states: dict[str, EndpointState] = {}

    # -- membership ---------------------------------------------------------------------------

    def sync(self, endpoints: Iterable[Endpoint]) -> None:
        """Make the store hold exactly ``endpoints``: add new ones, drop removed ones.

        Survivors keep their state; their ``Endpoint`` (name, engine) is replaced by the new one.
        """
        old = self._states
        fresh: dict[str, EndpointState] = {}
        for endpoint in endpoints:
            address = endpoint.address
            state = fresh.get(address) or old.get(address)
            if state is None:
                state = EndpointState(endpoint)
            else:
                state.endpoint = endpoint
            fresh[address] = state
        self._states = fresh

    def state(self, endpoint: Endpoint) -> EndpointState:
        """The endpoint's state, created (and so scraped from now on) on first use."""
        state = self._states.get(endpoint.address)
        if state is None:
            state = self._states[endpoint.address] = EndpointState(endpoint)
        return state

    def states(self, endpoints: Sequence[Endpoint]) -> list[EndpointState]:
        """The states of ``endpoints``, in the same order (created as needed)."""
        return [self.state(endpoint) for endpoint in endpoints]

    def endpoints(self) -> list[Endpoint]:
        return [state.endpoint for state in self._states.values()]

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, endpoint: object) -> bool:
        return isinstance(endpoint, Endpoint) and endpoint.address in self._states

    # -- scrapes ------------------------------------------------------------------------------

    def record_scrape(self, endpoint: Endpoint, metrics: ServerMetrics) -> None:
        state = self._states.get(endpoint.address)
        if state is None:
            return  # dropped by a reload while the scrape was running
        previous = state.metrics
        if previous is not None and metrics.scraped_at < previous.scraped_at:
            return  # an older scrape finishing last must not replace a newer one
        state.metrics = metrics
        state.scrape_errors = 0
        if metrics.waiting > 0 and metrics.running > (state.batch_limit or 0):
            state.batch_limit = metrics.running  # they wait: the batch is full at this size

    def record_scrape_error(self, endpoint: Endpoint) -> None:
        state = self._states.get(endpoint.address)
        if state is not None:
            state.scrape_errors += 1

    def forget_metrics(self, address: str) -> None:
        """A request could not connect to ``address``: drop its last scrape, so pickers treat
        it as stale (saturated) until a scrape answers again, instead of steering requests at
        a dead server that looked idle when it was last seen."""
        state = self._states.get(address)
        if state is not None:
            state.metrics = None

    def is_stale(self, endpoint: Endpoint, now: float) -> bool:
        """No scrape yet, or the last good one is older than ``stale_after`` (unknown: stale)."""
        state = self._states.get(endpoint.address)
        return state is None or state.is_stale(now, self.stale_after)

    def staleness(self, now: float) -> dict[str, bool]:
        """Address → stale, for a gauge."""
        threshold = self.stale_after
        return {address: state.is_stale(now, threshold)
                for address, state in self._states.items()}

    # -- the gateway's own view ---------------------------------------------------------------

    def on_dispatch(self, endpoint: Endpoint, tokens: int, *, prefill_tokens: int = 0) -> int:
        """A request was sent to ``endpoint``; ``tokens`` = prompt + expected output tokens,
        ``prefill_tokens`` = its prompt tokens the endpoint is not expected to have cached.

        Returns the prefill tokens the endpoint had pending before this request (for
        ``on_first_token``'s ``prefill_tokens_ahead``).
        """
        state = self.state(endpoint)
        ahead = state.pending_prefill_tokens
        state.in_flight_requests += 1
        state.in_flight_tokens += max(tokens, 0)
        state.pending_prefill_tokens += max(prefill_tokens, 0)
        return ahead

    def on_first_token(self, endpoint: Endpoint, *, uncached_prompt_tokens: int,
                       seconds: float, prefill_tokens_ahead: int = 0) -> None:
        """The first token arrived ``seconds`` after dispatch: the request's prefill
        (``uncached_prompt_tokens``, as given to ``on_dispatch``) is done.

        Learns seconds per prefill token from the prefill work that stood between dispatch and
        this token (``prefill_tokens_ahead``, what ``on_dispatch`` returned, plus our own), after
        taking off one engine step (the learned decode rate, which emits the token). Requests
        with less than ``MIN_PREFILL_SAMPLE_TOKENS`` of such work teach nothing: their TTFT is
        mostly step time and would make a cache-warm endpoint look slow at prefill.
        """
        state = self._states.get(endpoint.address)
        if state is None:
            return
        uncached = max(uncached_prompt_tokens, 0)
        state.pending_prefill_tokens = max(state.pending_prefill_tokens - uncached, 0)
        work = uncached + max(prefill_tokens_ahead, 0)
        if work < MIN_PREFILL_SAMPLE_TOKENS or not _duration(seconds):
            return
        step = state.ewma_decode_seconds_per_token or 0.0
        state.ewma_prefill_seconds_per_token = self._ewma(
            state.ewma_prefill_seconds_per_token, max(seconds - step, 0.0) / work)

    def on_complete(self, endpoint: Endpoint, tokens: int, *, output_tokens: int = 0,
                    decode_seconds: float = 0.0, pending_prefill_tokens: int = 0) -> None:
        """A request finished (or failed); ``tokens`` is what ``on_dispatch`` added and
        ``pending_prefill_tokens`` its prefill tokens when no first token was seen (non-streamed
        or failed before the first token), so they are released here.

        ``decode_seconds`` spans the first to the last output token, so it covers
        ``output_tokens - 1`` decode steps; the decode rate is learned when there is at least one.
        """
        state = self._states.get(endpoint.address)
        if state is None:
            return
        state.in_flight_requests = max(state.in_flight_requests - 1, 0)
        state.in_flight_tokens = max(state.in_flight_tokens - max(tokens, 0), 0)
        state.pending_prefill_tokens = max(
            state.pending_prefill_tokens - max(pending_prefill_tokens, 0), 0)
        if output_tokens > 1 and _duration(decode_seconds):
            state.ewma_decode_seconds_per_token = self._ewma(
                state.ewma_decode_seconds_per_token, decode_seconds / (output_tokens - 1))

    def _ewma(self, previous: float | None, sample: float) -> float:
        if previous is None:
            return sample
        return previous + self.ewma_alpha * (sample - previous)


def _duration(seconds: float) -> bool:
    return math.isfinite(seconds) and seconds >= 0

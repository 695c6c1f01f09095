"""``predicted-latency-scorer``: prefer the endpoint with the smallest predicted time to 1st token.

For request ``r`` on endpoint ``e`` (``m`` = its last scrape, zeros before the first one)::

    prompt       = r.prompt_tokens, or ⌈len(r.prompt) / 4⌉ when not given
    prefill      = e.ewma_prefill_seconds_per_token or defaultPrefillSecondsPerToken (1e-4)
    decode       = e.ewma_decode_seconds_per_token  or defaultDecodeSecondsPerToken  (0.02)
    step         = decode * (m.running + 1)   if decodeScalesWithBatch
                   decode                     otherwise (default)
    uncached     = max(0, prompt - prefix-index matched tokens on e)
    ahead        = max(e.pending_prefill_tokens, m.waiting * uncached)
                   (the uncached prompts we sent that have no first token yet — exact, no scrape
                   lag — or, when the server reports more queued than we sent, its queue priced
                   at our own prefill work there)
    TTFT(r, e)   = (ahead + uncached) * prefill   (the prefill work ahead, then ours)
                 + step                          (the step that emits token 1)

With ``queuedRequestTokens`` set, ``ahead`` is instead ``queue_ahead * queuedRequestTokens`` with
``queue_ahead = m.waiting + max(0, in_flight_requests - m.waiting - m.running)``. Requests blocked
on KV space or on a LoRA slot are not modelled, so near saturation the estimate runs low; pair
this scorer with ``kv-cache-utilization-scorer`` and ``lora-affinity-scorer`` (the built-in
profile does). The learned prefill rate comes from first tokens whose prefill work ahead was at
least 256 tokens (``EndpointStore.on_first_token``), after taking off one step.
``score_e = min_c TTFT(r, c) / TTFT(r, e)``: the fastest endpoint scores 1, one predicted twice
as slow 0.5.

``decodeScalesWithBatch``: whether ``ewma_decode_seconds_per_token`` is a per-sequence share of an
engine step (then one step costs it once per sequence in the batch) or, as measured from a
client's inter-token latency, already the whole step (the default: multiplying an inter-token
latency by the batch would count the batch twice).

The prefix match comes from the ``prefix-cache-scorer`` of the same profile when there is one
(the registry shares its index); otherwise this scorer keeps its own index (same parameters)
and records each pick in it. ``predict_ttft`` exposes the estimate (seconds) so the gateway can
report predicted vs observed TTFT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inferlane.scheduling.interfaces import PickRequest
from inferlane.scheduling.plugins.params import Params
from inferlane.scheduling.plugins.scorer.normalize import relative_to_best
from inferlane.scheduling.plugins.scorer.prefix_cache import index_from_params
from inferlane.scheduling.prefix_index import DEFAULT_CHARS_PER_TOKEN, PrefixIndex
from inferlane.scheduling.types import EndpointState

DEFAULT_PREFILL_SECONDS_PER_TOKEN = 1e-4
DEFAULT_DECODE_SECONDS_PER_TOKEN = 0.02
_FLOOR = 1e-9  # keeps the ratio defined when every rate is configured to 0


class PredictedLatencyScorer:
    __slots__ = ("_owns_index", "decode_scales_with_batch", "default_decode", "default_prefill",
                 "prefix_index", "queued_request_tokens")

    def __init__(self, *, prefix_index: PrefixIndex | None = None,
                 default_prefill: float = DEFAULT_PREFILL_SECONDS_PER_TOKEN,
                 default_decode: float = DEFAULT_DECODE_SECONDS_PER_TOKEN,
                 decode_scales_with_batch: bool = False,
                 queued_request_tokens: int | None = None) -> None:
        self.prefix_index = prefix_index or PrefixIndex()
        self._owns_index = True
        self.default_prefill = default_prefill
        self.default_decode = default_decode
        self.decode_scales_with_batch = decode_scales_with_batch
        self.queued_request_tokens = queued_request_tokens

    def use_prefix_index(self, index: PrefixIndex) -> None:
        """Read another plugin's index (which records picks) instead of keeping our own."""
        self.prefix_index = index
        self._owns_index = False

    @staticmethod
    def prompt_tokens(request: PickRequest) -> int:
        if request.prompt_tokens > 0:
            return request.prompt_tokens
        return -(-len(request.prompt) // DEFAULT_CHARS_PER_TOKEN)

    def predict_ttft(self, request: PickRequest, state: EndpointState) -> float:
        return self.estimates(request, (state,))[0]

    def estimates(self, request: PickRequest,
                  candidates: Sequence[EndpointState]) -> list[float]:
        """Predicted TTFT in seconds for each candidate (the formula above)."""
        prompt = self.prompt_tokens(request)
        fixed_queued = self.queued_request_tokens
        default_prefill = self.default_prefill
        default_decode = self.default_decode
        scales = self.decode_scales_with_batch
        cached_tokens = self.prefix_index.matched_tokens(request, candidates)
        out: list[float] = []
        append = out.append
        for state, cached in zip(candidates, cached_tokens, strict=True):
            metrics = state.metrics
            waiting = metrics.waiting if metrics is not None else 0
            running = metrics.running if metrics is not None else 0
            unreported = state.in_flight_requests - waiting - running
            queue_ahead = waiting + unreported if unreported > 0 else waiting
            prefill = state.ewma_prefill_seconds_per_token
            if prefill is None:
                prefill = default_prefill
            decode = state.ewma_decode_seconds_per_token
            if decode is None:
                decode = default_decode
            uncached = prompt - cached if prompt > cached else 0.0
            if fixed_queued is not None:
                ahead: float = queue_ahead * fixed_queued
            else:
                pending = state.pending_prefill_tokens
                scraped = waiting * uncached
                ahead = pending if pending > scraped else scraped
            append((ahead + uncached) * prefill
                   + (decode * (running + 1) if scales else decode))
        return out

    def score(self, request: PickRequest, candidates: Sequence[EndpointState]) -> list[float]:
        return relative_to_best(self.estimates(request, candidates), _FLOOR)

    def picked(self, request: PickRequest, state: EndpointState) -> None:
        if self._owns_index:
            self.prefix_index.record_request(request, state)


def factory(name: str, params: Mapping[str, Any]) -> PredictedLatencyScorer:
    p = Params(name or "predicted-latency-scorer", params)
    plugin = PredictedLatencyScorer(
        prefix_index=index_from_params(p),
        default_prefill=p.number("defaultPrefillSecondsPerToken",
                                 DEFAULT_PREFILL_SECONDS_PER_TOKEN, minimum=0),
        default_decode=p.number("defaultDecodeSecondsPerToken",
                                DEFAULT_DECODE_SECONDS_PER_TOKEN, minimum=0),
        decode_scales_with_batch=p.boolean("decodeScalesWithBatch", False),
        queued_request_tokens=p.optional_integer("queuedRequestTokens", minimum=1),
    )
    p.done()
    return plugin

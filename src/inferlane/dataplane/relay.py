"""Relaying an attempt's answer to the client, and recording how the request went.

Once the attempt loop (``proxy.py``) has an answer it will not retry, ``Relay.answer`` sends it:
a JSON body whole, or an event stream chunk by chunk as it arrives — translated event by event
when the client's dialect differs from the backend's — with the first-token bookkeeping of the
endpoint store, the TTFT metrics, the usage found on the way, the rate-limit charge and the
mirror comparison's view of the primary. ``Relay.count`` records every answered request,
relayed or not, in the request metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from aiohttp import web
from multidict import CIMultiDict

from inferlane.dataplane.attempt import HOP_BY_HOP, Opened, RequestContext, apply_modifier
from inferlane.dataplane.h1client import UpstreamError
from inferlane.dataplane.mirror import PrimaryRecorder
from inferlane.dataplane.rate_limiting import Charge
from inferlane.dataplane.request import error_response
from inferlane.dataplane.sse import SseUsageScanner, Usage, usage_from_body
from inferlane.dataplane.state import GatewayState
from inferlane.errors import RequestError
from inferlane.providers.exchange import ClientApi
from inferlane.providers.runtime import ProviderRuntime
from inferlane.routing.affinity import cookie_token
from inferlane.routing.backends import BackendRef
from inferlane.routing.router import Routed

log = logging.getLogger("inferlane.proxy")

BACKEND_HEADER = "x-inferlane-backend"
ATTEMPTS_HEADER = "x-inferlane-attempts"
# Provider response headers never relayed: cookies and the provider's own connection details.
_PROVIDER_DROP = HOP_BY_HOP | {"set-cookie", "content-encoding", "server", "alt-svc",
                               "cf-ray", "x-request-id", "request-id"}


class _ClientGone(Exception):
    """The client disconnected while we were writing a stream to it."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("client disconnected")
        self.response = response


class Relay:
    """Answers and counts requests for one gateway's state."""

    def __init__(self, state: GatewayState) -> None:
        self._state = state

    async def answer(self, request: web.Request, opened: Opened, ctx: RequestContext,
                     routed: Routed, arm: BackendRef, attempts: int, started: float,
                     charges: list[Charge], recorder: PrimaryRecorder) -> web.StreamResponse:
        state = self._state
        upstream = opened.upstream
        status = upstream.status
        headers = self._headers(opened, ctx, routed, attempts)
        usage = Usage()
        try:
            if (upstream.header("content-type") or "").startswith("text/event-stream"):
                return await self._stream(request, opened, headers, ctx, routed, started,
                                          usage, recorder)
            payload = await upstream.read()
            translation = opened.translation
            if translation is not None:
                payload = translation.body(payload) if status < 400 else \
                    translation.error(status, payload)
                usage.take(translation.usage)
            elif status == 200:
                usage = usage_from_body(payload)
            recorder.body(payload)
            return web.Response(status=status, body=payload, headers=headers)
        except RequestError as error:
            status = error.status
            log.warning("request %s to %s failed: %s", ctx.request_id, opened.where,
                        error.message)
            return error_response(error, ctx.request_id, ctx.api)
        except _ClientGone as gone:
            status = 499  # nginx's "client closed request"; only ever seen in metrics
            self.client_gone(opened)
            return gone.response
        except asyncio.CancelledError:
            status = 499
            self.client_gone(opened)
            raise
        finally:
            opened.finish(usage)
            recorder.done(status, usage)
            self.count(routed, arm, opened.backend, status, started, ctx.api, opened.provider,
                       opened, usage)
            if charges and state.rate_limits is not None:
                # Without a usage report (a stream that did not ask for it) the prompt
                # estimate is all there is to charge.
                tokens = (usage.prompt_tokens + usage.completion_tokens if usage.seen
                          else ctx.prompt.prompt_tokens)
                state.rate_limits.charge_soon(charges, tokens)

    def client_gone(self, opened: Opened) -> None:
        metrics = self._state.metrics
        pool = opened.decision.pool.key if opened.decision is not None else ""
        metrics.child(metrics.client_disconnects, pool).inc()

    def _headers(self, opened: Opened, ctx: RequestContext, routed: Routed,
                 attempts: int) -> CIMultiDict[str]:
        drop = HOP_BY_HOP if opened.provider is None else _PROVIDER_DROP
        headers = [(name, value) for name, value in opened.upstream.headers
                   if name.lower() not in drop]  # content-length is hop-by-hop here too
        headers.append(("x-request-id", ctx.request_id))
        headers.append((BACKEND_HEADER, opened.backend.label))
        headers.append((ATTEMPTS_HEADER, str(attempts)))
        decision = opened.decision
        if decision is not None:
            headers.append(("x-inferlane-endpoint", decision.endpoint.address))
            if ctx.explain > 1:
                headers.append(("x-inferlane-scores", decision.pick.explain()))
        cookie = _session_cookie(routed, opened.backend)
        if cookie is not None:
            headers.append(("Set-Cookie", cookie))
        modifier = routed.rule.response_headers
        if modifier is not None:
            headers = apply_modifier(modifier, headers)
        return CIMultiDict(headers)

    async def _stream(self, request: web.Request, opened: Opened, headers: CIMultiDict[str],
                      ctx: RequestContext, routed: Routed, started: float, usage: Usage,
                      recorder: PrimaryRecorder) -> web.StreamResponse:
        upstream = opened.upstream
        translation = opened.translation
        # Untranslated streams carry OpenAI usage chunks; the scanner fills ``usage`` itself.
        scanner = SseUsageScanner(usage) if translation is None else None
        timing = opened.timing
        decision = opened.decision
        response = web.StreamResponse(status=upstream.status, headers=headers)
        try:
            await response.prepare(request)
        except ConnectionResetError as exc:
            raise _ClientGone(response) from exc
        first = True
        try:
            async for chunk in upstream.iter_chunks():
                timing.last_chunk = time.monotonic()
                if first:
                    first = False
                    timing.first_chunk = timing.last_chunk
                    self._first_token(opened, ctx, routed, started)
                    recorder.first_token(timing.first_chunk - timing.dispatched)
                if scanner is not None:
                    scanner.feed(chunk)
                out = chunk if translation is None else translation.stream(chunk)
                if out:
                    recorder.stream(out)
                    await _write(response, out)
            if translation is not None:
                await _write(response, translation.finish())
        except (UpstreamError, RequestError) as exc:
            # Headers are gone: the only honest answer left is a final in-stream error.
            log.warning("stream from %s broke off: %s", opened.where, exc)
            if translation is not None:
                frame = translation.broken(str(exc))
            elif ctx.api is ClientApi.MESSAGES:
                frame = b"event: error\ndata: " + orjson.dumps({"type": "error", "error": {
                    "type": "api_error",
                    "message": f"The backend {opened.where} broke off the stream ({exc})."}}) \
                    + b"\n\n"
            else:
                pool = f" of InferencePool {decision.pool.key}" if decision else ""
                address = decision.endpoint.address if decision else opened.where
                frame = b"data: " + orjson.dumps({"error": {
                    "message": f"The model server at endpoint {address}{pool} broke off the "
                               f"stream ({exc}).",
                    "type": "upstream_error", "param": None,
                    "code": "upstream_stream_interrupted"}}) + b"\n\n"
            await _write(response, frame)
        finally:
            if translation is not None:
                usage.take(translation.usage)
        try:
            await response.write_eof()
        except ConnectionResetError as exc:
            raise _ClientGone(response) from exc
        return response

    def _first_token(self, opened: Opened, ctx: RequestContext, routed: Routed,
                     started: float) -> None:
        state = self._state
        metrics = state.metrics
        timing = opened.timing
        decision = opened.decision
        assert timing.first_chunk is not None
        ttft = time.perf_counter() - started
        model = metrics.model_label(routed.requested_model)
        metrics.child(metrics.traffic.time_to_first_token, _OPERATIONS[ctx.api],
                      _provider_name(opened.provider), model,
                      opened.backend.label).observe(ttft)
        if decision is None:
            return
        if decision.pool.needs_metrics:
            state.endpoints.on_first_token(
                decision.endpoint, uncached_prompt_tokens=timing.prefill_tokens,
                seconds=timing.first_chunk - timing.dispatched,
                prefill_tokens_ahead=timing.prefill_ahead)
        metrics.child(metrics.time_to_first_token, decision.rule.label, model,
                      decision.pool.key).observe(ttft)
        target = decision.objective.ttft_target
        if target is not None:
            metrics.child(metrics.slo_requests, decision.pool.key, decision.objective.name,
                          "met" if ttft <= target else "missed").inc()

    def count(self, routed: Routed, arm: BackendRef, backend: BackendRef, status: int,
              started: float, api: ClientApi, provider: ProviderRuntime | None,
              opened: Opened | None = None, usage: Usage | None = None) -> None:
        """Record one answered request; ``provider`` is the backend's, None for a pool."""
        metrics = self._state.metrics
        traffic = metrics.traffic
        route = routed.rule.label
        model = metrics.model_label(routed.requested_model)
        elapsed = time.perf_counter() - started
        metrics.child(traffic.backend_requests, route, model, arm.label, backend.label,
                      str(status)).inc()
        decision = opened.decision if opened is not None else None
        pool = decision.pool.key if decision is not None else ""
        endpoint = decision.endpoint.address if decision is not None else backend.label
        target = decision.upstream_model if decision is not None else model
        metrics.child(metrics.requests, route, model, metrics.model_label(target), pool,
                      endpoint, str(status)).inc()
        metrics.child(metrics.request_duration, route, model, pool).observe(elapsed)
        provider_name = _provider_name(provider)
        operation = _OPERATIONS[api]
        metrics.child(traffic.operation_duration, operation, provider_name, model,
                      backend.label).observe(elapsed)
        if usage is not None and usage.seen:
            if pool:
                metrics.child(metrics.input_tokens, model, pool).inc(usage.prompt_tokens)
                metrics.child(metrics.output_tokens, model, pool).inc(usage.completion_tokens)
            for kind, tokens in (("input", usage.prompt_tokens),
                                 ("output", usage.completion_tokens)):
                metrics.child(traffic.token_usage, operation, provider_name, model, kind,
                              backend.label).observe(tokens)


_OPERATIONS = {ClientApi.CHAT: "chat", ClientApi.MESSAGES: "chat",
               ClientApi.COMPLETIONS: "text_completion", ClientApi.EMBEDDINGS: "embeddings"}


def _provider_name(provider: ProviderRuntime | None) -> str:
    """OpenTelemetry's ``gen_ai.provider.name``: well-known values for providers."""
    if provider is None:
        return "inferlane.pool"
    return {"openai": "openai", "azure-openai": "azure.ai.openai", "anthropic": "anthropic"}.get(
        provider.type, "openai-compatible")


async def _write(response: web.StreamResponse, data: bytes) -> None:
    if not data:
        return
    try:
        await response.write(data)
    except ConnectionResetError as exc:
        raise _ClientGone(response) from exc


def _session_cookie(routed: Routed, backend: BackendRef) -> str | None:
    """``Set-Cookie`` for a Cookie session: when the session is new or moved to another backend
    (failover), and on every answer when an idle timeout slides the cookie's expiry."""
    affinity = routed.rule.affinity
    if affinity is None or affinity.type != "Cookie" or backend not in routed.rule.backends.items:
        return None
    token = cookie_token(backend)
    if token == routed.session and affinity.idle_timeout is None:
        return None
    cookie = f"{affinity.name}={token}; Path=/; HttpOnly"
    max_age = affinity.cookie_max_age()
    return cookie if max_age is None else f"{cookie}; Max-Age={max_age}"


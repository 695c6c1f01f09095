"""RequestMirror: shadow copies of a request, and the comparison with the primary's answer.

A copy starts when the primary does and runs as its own task: the primary never waits for it,
its answer never reaches the client, it is charged to no rate limit and it enters a pool's
flow control as sheddable (a saturated pool drops it). Each rule has ``maxConcurrent`` copies in
flight at most; more are dropped ("overloaded"), as are copies slower than the mirror timeout
("timeout") or whose backend cannot be reached ("error"). When both the primary and the copy
have finished, the two outcomes go to ``ShadowStats`` (``/admin/shadow``, ``inferlane
shadow-report``) and the shadow metrics, per (primary model, shadow model) pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

from inferlane.dataplane.attempt import Opened, RequestContext, open_pool, open_provider
from inferlane.dataplane.h1client import UpstreamError
from inferlane.dataplane.sse import SseUsageScanner, Usage, usage_from_body
from inferlane.dataplane.state import GatewayState
from inferlane.errors import RequestError, RequestShed, UpstreamTimeout
from inferlane.providers.answer_text import AnswerText
from inferlane.routing.backends import BackendRef
from inferlane.routing.objectives import Objective
from inferlane.routing.resilience import MirrorTarget
from inferlane.routing.router import GatewaySnapshot, Routed
from inferlane.routing.shadow import DropReason, Outcome

log = logging.getLogger("inferlane.mirror")

MIRROR_OBJECTIVE = Objective("inferlane-mirror", priority=-1)  # sheddable


class _Shadow:
    """One copy: its task, and its outcome once known."""

    __slots__ = ("backend_label", "model", "outcome", "task")

    def __init__(self, model: str, backend_label: str) -> None:
        self.model = model
        self.backend_label = backend_label
        self.outcome: Outcome | None = None
        self.task: asyncio.Task[None] | None = None


class MirrorRun:
    """The copies of one request."""

    __slots__ = ("_primary", "_primary_model", "_shadows", "_state")

    def __init__(self, state: GatewayState, primary_model: str) -> None:
        self._state = state
        self._primary_model = primary_model
        self._primary: Outcome | None = None
        self._shadows: list[_Shadow] = []

    @classmethod
    def start(cls, state: GatewayState, snapshot: GatewaySnapshot, routed: Routed,
              ctx: RequestContext) -> MirrorRun | None:
        rule = routed.rule
        if not rule.mirrors:
            return None
        run = cls(state, _served_model(snapshot, routed, routed.chain[0]))
        key = (rule.route, rule.rule_index)
        for target in rule.mirrors:
            if target.fraction < 1.0 and state.router.draw() >= target.fraction:
                continue
            shadow_model = _served_model(snapshot, routed, target.backend)
            if shadow_model == run._primary_model:
                shadow_model = f"{shadow_model}@{target.backend.label}"
            state.shadow.mirrored(run._primary_model, shadow_model)
            state.metrics.shadow.mirrored(run._primary_model, shadow_model)
            if state.mirror_in_flight.get(key, 0) >= rule.failure.mirror_max_concurrent:
                run._drop(shadow_model, "overloaded")
                continue
            shadow = _Shadow(shadow_model, target.backend.label)
            state.mirror_in_flight[key] = state.mirror_in_flight.get(key, 0) + 1
            shadow.task = state.spawn(run._run(snapshot, routed, ctx, target, shadow, key))
            run._shadows.append(shadow)
        return run if run._shadows else None

    def primary_done(self, outcome: Outcome) -> None:
        self._primary = outcome
        for shadow in self._shadows:
            self._compare(shadow)

    async def _run(self, snapshot: GatewaySnapshot, routed: Routed, ctx: RequestContext,
                   target: MirrorTarget, shadow: _Shadow, key: tuple[str, int]) -> None:
        timeout = routed.rule.failure.mirror_timeout
        copy = dataclasses.replace(ctx, request_id=f"{ctx.request_id}-mirror", tried=set(),
                                   deadline=time.monotonic() + timeout, explain=1, endpoint="")
        opened: Opened | None = None
        usage = Usage()
        text = AnswerText()
        started = time.monotonic()
        ttft: float | None = None
        try:
            async with asyncio.timeout(timeout):
                if target.backend.is_pool:
                    opened = await open_pool(self._state, snapshot, routed, target.backend, copy,
                                             objective=MIRROR_OBJECTIVE)
                else:
                    opened = await open_provider(self._state, snapshot, target.backend, copy)
                upstream = opened.upstream
                translation = opened.translation
                if (upstream.header("content-type") or "").startswith("text/event-stream"):
                    scanner = SseUsageScanner()
                    async for chunk in upstream.iter_chunks():
                        if ttft is None:
                            ttft = time.monotonic() - started
                        scanner.feed(chunk)
                        text.stream(chunk if translation is None else translation.stream(chunk))
                    usage = scanner.usage
                else:
                    payload = await upstream.read()
                    if translation is not None and upstream.status < 400:
                        payload = translation.body(payload)
                    usage = usage_from_body(payload)
                    text.body(payload)
                if translation is not None:
                    usage.take(translation.usage)
            shadow.outcome = Outcome(status=upstream.status, latency=time.monotonic() - started,
                                     ttft=ttft, output_tokens=usage.completion_tokens
                                     if usage.seen else None, text=text.text)
        except (TimeoutError, UpstreamTimeout):  # whichever timer fired first
            self._drop(shadow.model, "timeout")
        except RequestShed:
            self._drop(shadow.model, "overloaded")
        except (RequestError, UpstreamError) as exc:
            log.info("mirror copy %s to %s failed: %s", copy.request_id, shadow.backend_label,
                     exc)
            self._drop(shadow.model, "error")
        finally:
            if opened is not None:
                opened.finish(usage)
            left = self._state.mirror_in_flight.get(key, 1) - 1
            if left > 0:
                self._state.mirror_in_flight[key] = left
            else:
                self._state.mirror_in_flight.pop(key, None)
        self._compare(shadow)

    def _compare(self, shadow: _Shadow) -> None:
        primary, outcome = self._primary, shadow.outcome
        if primary is None or outcome is None:
            return
        shadow.outcome = None  # compare once
        score = self._state.shadow.compared(self._primary_model, shadow.model, primary, outcome)
        self._state.metrics.shadow.compared(self._primary_model, shadow.model, primary, outcome,
                                            score)

    def _drop(self, shadow_model: str, reason: DropReason) -> None:
        self._state.shadow.dropped(self._primary_model, shadow_model, reason)
        self._state.metrics.shadow.dropped(self._primary_model, shadow_model, reason)


class PrimaryRecorder:
    """Collects the primary's outcome for its mirror copies (does nothing without any)."""

    __slots__ = ("_started", "_text", "_ttft", "mirror")

    def __init__(self, mirror: MirrorRun | None) -> None:
        self.mirror = mirror
        self._text = AnswerText() if mirror is not None else None
        self._started = time.monotonic()
        self._ttft: float | None = None

    def first_token(self, seconds: float) -> None:
        self._ttft = seconds

    def stream(self, data: bytes) -> None:
        if self._text is not None:
            self._text.stream(data)

    def body(self, payload: bytes) -> None:
        if self._text is not None:
            self._text.body(payload)

    def done(self, status: int, usage: Usage) -> None:
        mirror, self.mirror = self.mirror, None
        if mirror is None or self._text is None:
            return
        with contextlib.suppress(Exception):  # a comparison must never fail the request
            mirror.primary_done(Outcome(
                status=status, latency=time.monotonic() - self._started, ttft=self._ttft,
                output_tokens=usage.completion_tokens if usage.seen else None,
                text=self._text.text))


def _served_model(snapshot: GatewaySnapshot, routed: Routed, backend: BackendRef) -> str:
    """The model name a backend is asked for (provider override, else the client's)."""
    if not backend.is_pool:
        provider = snapshot.providers.get(backend.key)
        if provider is not None and provider.model_name_override:
            return provider.model_name_override
        return routed.requested_model
    pool = snapshot.pools.get(backend.key)
    if pool is None or not routed.requested_model:
        return routed.requested_model
    return pool.rewrites.rewrite(routed.requested_model, routed.rewrite_unit)

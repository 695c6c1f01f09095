"""One simulated vLLM replica: an aiohttp app around one ``Engine`` plus the task that drives it.

The driver runs ``engine.step(now)``, sleeps the step's duration (times the time scale) and only
then hands the step's tokens to the waiting HTTP handlers, so tokens reach the socket at the pace
a real server would produce them. A handler whose client goes away is cancelled by aiohttp
(``handler_cancellation=True``) and aborts its sequences, freeing their batch slots and blocks.

Simulated time: the engine sees ``(loop.time() - start) / time_scale`` seconds, so its latency
metrics are in simulated seconds while the wall clock runs ``time_scale`` times as fast.

Anthropic's ``/v1/messages`` runs as a chat completion; ``anthropic.py`` translates it both ways.

Faults (``faults.py`` decides, ``_accept`` acts) can be changed while the replica runs, by tests
and benchmarks that need a healthy replica to start failing: ``GET /sim/faults`` answers the
current ``FaultOptions`` as JSON, ``POST /sim/faults`` with such an object (absent fields take
their defaults, ``{}`` clears every fault) replaces them and answers the new ones; an unknown
field or a bad value is a 400 in OpenAI error JSON. Counters and the RNG carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from inferlane.sim import anthropic
from inferlane.sim.engine import Engine, EngineConfig, EngineRequest, FinishReason, Sequence
from inferlane.sim.faults import FaultAction, FaultInjector, FaultOptions, retry_after_headers
from inferlane.sim.metrics import CONTENT_TYPE, MetricsRenderer
from inferlane.sim.prefix_cache import block_hashes
from inferlane.sim.protocol import (
    APIError,
    ChoiceResult,
    ChunkTemplates,
    Endpoint,
    ParsedRequest,
    ServedModels,
    embedding_body,
    generation_body,
    models_body,
    parse_request,
)
from inferlane.sim.tokens import (
    WORD_JSON,
    Prompt,
    natural_output_length,
    output_text,
    output_word_index,
)

_JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_ID_PREFIX = {Endpoint.CHAT: "chatcmpl-", Endpoint.COMPLETION: "cmpl-", Endpoint.EMBEDDING: "embd-"}


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    """Everything about one replica except its faults (which may change at run time)."""

    model: str = "sim-model"
    adapters: tuple[str, ...] = ()
    engine: EngineConfig = field(default_factory=EngineConfig)
    min_output_tokens: int = 16
    max_output_tokens: int = 128
    embedding_dimensions: int = 16
    time_scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_output_tokens <= self.max_output_tokens:
            raise ValueError("need 1 <= min_output_tokens <= max_output_tokens, got "
                             f"{self.min_output_tokens}..{self.max_output_tokens}")
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")
        if self.embedding_dimensions < 1:
            raise ValueError(f"embedding_dimensions must be >= 1, got {self.embedding_dimensions}")


class _Choice:
    """The handler-side view of one sequence: what the driver has made visible so far."""

    __slots__ = ("finish_reason", "index", "request_id", "seed", "sent", "sequence", "visible")

    def __init__(self, request_id: int, index: int, seed: int, sequence: Sequence) -> None:
        self.request_id = request_id
        self.index = index
        self.seed = seed
        self.sequence = sequence
        self.visible = 0  # tokens delivered by the driver
        self.sent = 0  # tokens written to the client (streaming)
        self.finish_reason: FinishReason | None = None


class _Flow:
    """All sequences of one HTTP request (several with ``n`` > 1 or a list of prompts)."""

    __slots__ = ("choices", "event")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.choices: list[_Choice] = []

    @property
    def finished(self) -> bool:
        return all(c.finish_reason is not None for c in self.choices)


class SimReplica:
    """A vLLM-compatible simulated model server on one port."""

    def __init__(self, index: int, settings: ReplicaSettings, faults: FaultOptions | None = None
                 ) -> None:
        self.index = index
        self.settings = settings
        self.model = settings.model
        self.engine = Engine(settings.engine)
        self.served = ServedModels(settings.model, settings.adapters,
                                   settings.engine.context_limit)
        self.fault_injector = FaultInjector(faults or FaultOptions(), settings.seed + index)
        self.address = ""
        self.crashed = False
        self.crashed_event = asyncio.Event()
        self._metrics = MetricsRenderer(settings.model, settings.engine,
                                        lora_enabled=bool(settings.adapters))
        self._flows: dict[int, tuple[_Flow, _Choice]] = {}
        self._request_ids = itertools.count(1)
        self._work = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._driver: asyncio.Task[None] | None = None
        self._epoch = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def faults(self) -> FaultOptions:
        return self.fault_injector.options

    @faults.setter
    def faults(self, options: FaultOptions) -> None:
        self.fault_injector.options = options  # request counter and RNG carry on

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completion)
        app.router.add_post("/v1/embeddings", self._embedding)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/sim/faults", self._get_faults)
        app.router.add_post("/sim/faults", self._set_faults)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = ephemeral) and start the engine driver."""
        loop = asyncio.get_running_loop()
        self._epoch = loop.time()
        runner = web.AppRunner(self.make_app(), handler_cancellation=True, access_log=None,
                               shutdown_timeout=1.0)
        await runner.setup()
        self._runner = runner
        assert runner.server is not None
        # Our own asyncio.Server rather than a TCPSite, so crash() can close it synchronously.
        self._server = await loop.create_server(runner.server, host, port, reuse_address=True)
        bound = self._server.sockets[0].getsockname()
        host_part = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.address = f"{host_part}:{bound[1]}"
        self._driver = asyncio.create_task(self._drive(), name=f"sim-replica-{self.index}")
        return self.address

    async def stop(self) -> None:
        driver = self._driver
        self._close(reset=False)
        if driver is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def crash(self) -> None:
        """Die abruptly: stop listening and reset every open connection."""
        if self.crashed:
            return
        self.crashed = True
        self._close(reset=True)
        self.crashed_event.set()

    def _close(self, *, reset: bool) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._driver is not None:
            self._driver.cancel()
            self._driver = None
        if self._runner is None or self._runner.server is None:
            return
        for handler in self._runner.server.connections:
            transport = handler.transport
            if transport is None:
                continue
            sock = transport.get_extra_info("socket")
            if reset and sock is not None:
                # SO_LINGER 0 turns the close into a TCP RST, as when a process dies.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()

    # -- engine driver ---------------------------------------------------------------------

    def now(self) -> float:
        """Simulated seconds since start."""
        return (asyncio.get_running_loop().time() - self._epoch) / self.settings.time_scale

    async def _drive(self) -> None:
        engine = self.engine
        loop = asyncio.get_running_loop()
        scale = self.settings.time_scale
        last_end = 0.0
        while True:
            # Steps never overlap in simulated time, even when the loop wakes a little early
            # (uvloop rounds timers to milliseconds).
            result = engine.step(max(self.now(), last_end)) if engine.has_work else None
            if result is None or result.idle:
                self._work.clear()
                await self._work.wait()
                continue
            last_end = result.end
            # Sleep until the step's end rather than for its duration, so the time spent
            # writing tokens between steps does not accumulate as drift.
            await asyncio.sleep(max(0.0, self._epoch + last_end * scale - loop.time()))
            flows = self._flows
            for request_id in result.tokens:
                entry = flows.get(request_id)
                if entry is not None:
                    entry[1].visible += 1
                    entry[0].event.set()
            for request_id, reason in result.finished:
                entry = flows.pop(request_id, None)
                if entry is not None:
                    entry[1].finish_reason = reason
                    entry[0].event.set()

    def _submit(self, parsed: ParsedRequest) -> _Flow:
        settings = self.settings
        config = settings.engine
        flow = _Flow()
        now = self.now()
        pooling = parsed.endpoint is Endpoint.EMBEDDING
        # vLLM keys cached blocks by adapter too, so the adapter name seeds the hash chain.
        hash_seed = parsed.lora or self.model
        for prompt_index, prompt in enumerate(parsed.prompts):
            hashes = block_hashes(hash_seed, prompt.block_payloads(config.block_size)) \
                if config.enable_prefix_caching else ()
            fingerprint = prompt.fingerprint()
            for sample in range(parsed.n):
                seed = fingerprint ^ (settings.seed * 0x9E3779B1) ^ (sample << 48)
                output, reason = (0, FinishReason.STOP) if pooling \
                    else self._output_plan(parsed, prompt, seed)
                request_id = next(self._request_ids)
                sequence = self.engine.submit(EngineRequest(
                    request_id, prompt.num_tokens, hashes, output, reason, parsed.lora,
                    pooling), now)
                choice = _Choice(request_id, prompt_index * parsed.n + sample, seed, sequence)
                flow.choices.append(choice)
                self._flows[request_id] = (flow, choice)
        self._work.set()
        return flow

    def _output_plan(self, parsed: ParsedRequest, prompt: Prompt, seed: int
                     ) -> tuple[int, FinishReason]:
        room = self.settings.engine.context_limit - prompt.num_tokens
        natural = natural_output_length(seed, self.settings.min_output_tokens,
                                        self.settings.max_output_tokens)
        limit = parsed.max_tokens
        if limit is not None and not (parsed.natural_stop and natural <= limit):
            return min(limit, room), FinishReason.LENGTH
        return (natural, FinishReason.STOP) if natural <= room else (room, FinishReason.LENGTH)

    def _abort(self, flow: _Flow) -> None:
        now = self.now()
        for choice in flow.choices:
            if choice.finish_reason is None:
                self._flows.pop(choice.request_id, None)
                self.engine.abort(choice.request_id, now)
                choice.finish_reason = FinishReason.ABORT

    # -- handlers --------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, Endpoint.CHAT)

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, Endpoint.COMPLETION)

    async def _embedding(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, Endpoint.EMBEDDING)

    async def _models(self, request: web.Request) -> web.Response:
        return web.Response(body=models_body(self.served, int(time.time())), content_type=_JSON)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _metrics_page(self, request: web.Request) -> web.Response:
        body = self._metrics.render(self.engine, time.time(),
                                    requests_received=self.fault_injector.requests_seen,
                                    injected_faults=self.fault_injector.injected)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.faults.to_json()), content_type=_JSON)

    async def _set_faults(self, request: web.Request) -> web.Response:
        """Replace this replica's faults with the posted ``FaultOptions`` JSON object."""
        try:
            document = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error_response(APIError(400, f"Invalid JSON in request body: {exc}"))
        try:
            self.faults = FaultOptions.from_json(document)
        except ValueError as exc:
            return _error_response(APIError(400, f"Replica {self.index} keeps its faults: {exc}"))
        return await self._get_faults(request)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic Messages: run as a chat completion, the answer translated back."""
        try:
            parsed = await self._accept(
                request, lambda body: anthropic.parse_messages(body, self.served))
        except APIError as exc:
            return web.Response(status=exc.status, body=anthropic.error_body(exc),
                                content_type=_JSON, headers=exc.headers)
        return await self._answer(request, parsed, anthropic.MessagesResponse(parsed.model))

    async def _generate(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        try:
            parsed = await self._accept(
                request, lambda body: parse_request(endpoint, body, self.served))
        except APIError as exc:
            return _error_response(exc)
        return await self._answer(request, parsed)

    async def _answer(self, request: web.Request, parsed: ParsedRequest,
                      translation: anthropic.MessagesResponse | None = None
                      ) -> web.StreamResponse:
        """Run ``parsed`` through the engine and answer in OpenAI format, or through
        ``translation`` in Anthropic format."""
        endpoint = parsed.endpoint
        flow = self._submit(parsed)
        try:
            response_id = _ID_PREFIX[endpoint] + uuid.uuid4().hex
            created = int(time.time())
            if parsed.stream:
                return await self._stream(request, parsed, flow, response_id, created,
                                          translation)
            while not flow.finished:
                await flow.event.wait()
                flow.event.clear()
            if endpoint is Endpoint.EMBEDDING:
                body = embedding_body(parsed, response_id, created,
                                      self.settings.embedding_dimensions)
            else:
                body = generation_body(parsed, response_id, created, [
                    ChoiceResult(c.index, output_text(c.seed, 0, c.visible),
                                 str(c.finish_reason), c.visible)
                    for c in flow.choices], flow.choices[0].sequence.num_cached_tokens)
                if translation is not None:
                    body = translation.body(body)
            return web.Response(body=body, content_type=_JSON)
        finally:
            self._abort(flow)  # no-op unless the client left (cancellation) before the end

    async def _accept(self, request: web.Request, parse: Callable[[object], ParsedRequest]
                      ) -> ParsedRequest:
        """Read the request, apply injected faults, then decode and ``parse`` it."""
        raw = await request.read()
        action = self.fault_injector.decide()
        if action is FaultAction.CRASH:
            self.crash()
            await asyncio.Event().wait()  # our connection is gone; aiohttp cancels us
        if action is FaultAction.HANG:
            await asyncio.Event().wait()  # until the client gives up
        if action is FaultAction.THROTTLE:
            retry_after = self.fault_injector.options.throttle_retry_after_s
            raise APIError(429, f"Simulated rate limit on replica {self.index} (injected "
                                f"fault): retry after {retry_after:g} s.",
                           headers=retry_after_headers(retry_after))
        if action is FaultAction.ERROR:
            raise APIError(500, f"Simulated internal server error on replica {self.index} "
                                "(injected fault).")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise APIError(400, f"Invalid JSON in request body: {exc}") from exc
        parsed = parse(body)
        delay_ms = self.fault_injector.options.added_latency_ms
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0 * self.settings.time_scale)
        return parsed

    async def _stream(self, request: web.Request, parsed: ParsedRequest, flow: _Flow,
                      response_id: str, created: int,
                      translation: anthropic.MessagesResponse | None) -> web.StreamResponse:
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        templates = ChunkTemplates(parsed, response_id, created)
        chat = parsed.endpoint is Endpoint.CHAT

        async def send(frames: list[bytes]) -> None:
            data = b"".join(frames) if translation is None else translation.frames(frames)
            if data:
                await response.write(data)

        try:
            while not flow.finished:
                await flow.event.wait()
                flow.event.clear()
                parts: list[bytes] = []
                for choice in flow.choices:
                    visible = choice.visible
                    if choice.sent == visible:
                        continue
                    if chat and choice.sent == 0:
                        # Sent with the first token, as vLLM does, so TTFT stays honest.
                        parts.append(templates.role(choice.index))
                    last = visible - 1 if choice.finish_reason is not None else -1
                    for position in range(choice.sent, visible):
                        word = WORD_JSON[output_word_index(choice.seed, position)]
                        reason = str(choice.finish_reason) if position == last else None
                        parts.append(templates.token(choice.index, word, reason))
                    choice.sent = visible
                if parts:
                    await send(parts)
            final = [templates.done]
            if parsed.include_usage:
                completion_tokens = sum(c.visible for c in flow.choices)
                final.insert(0, templates.usage(parsed, created, completion_tokens))
            await send(final)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client left; the caller's finally aborts what is still running
        return response


def _error_response(error: APIError) -> web.Response:
    return web.Response(status=error.status, body=error.body(), content_type=_JSON,
                        headers=error.headers)

"""Fake hosted LLM providers for end-to-end tests: OpenAI, Azure OpenAI, Anthropic in one process.

``python tests/e2e/fake_providers.py --port P`` (0 picks a port; the URL is printed on stdout);
tests start it through ``provider_harness.FakeProvider``. Wire formats follow the public API
references: ``POST /v1/chat/completions`` (OpenAI, ``Authorization: Bearer KEY``),
``POST /openai/deployments/{deployment}/chat/completions?api-version=V`` (Azure OpenAI,
``api-key: KEY``; ``model`` is the deployment) and ``POST /v1/messages`` (Anthropic,
``x-api-key: KEY`` or ``Authorization: Bearer KEY``, and a required ``anthropic-version``).

The default answer is deterministic (``"{NAME} answers: " + <last user text>``, or one call of
the first tool when tools are offered). ``POST /_fake/script`` queues fault actions, one popped
per inference request; ``GET /_fake/requests`` shows what arrived. Actions, answers, renderings
and errors are pure functions; only the aiohttp handlers at the bottom do I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import enum
import functools
import hmac
import itertools
import json
import re
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

JSON = dict[str, Any]
Ids = tuple[str, int]  # response id, created (Unix seconds)

MAX_RECORDED_REQUESTS = 1000
QUOTED_PROMPT_CHARS = 200
TOOL_ARGUMENTS = {"city": "Paris", "unit": "celsius"}
ARGUMENT_FRAGMENT_CHARS = 8  # the 37-character arguments JSON streams as 5 fragments
OPENAI_CONTEXT_LIMIT = 128_000
ANTHROPIC_CONTEXT_LIMIT = 200_000


class Flavour(enum.Enum):
    OPENAI = "openai"
    AZURE = "azure"
    ANTHROPIC = "anthropic"


# -- scripted actions ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Action:
    """What to do with one inference request; the default (no fields set) answers normally."""

    status: int | None = None
    retry_after: str | None = None
    retry_after_ms: str | None = None
    context_window: bool = False
    delay_ms: int = 0
    hang: bool = False
    close: bool = False
    stream_error_after: int | None = None
    text: str | None = None

    @classmethod
    def parse(cls, raw: object) -> Action:
        if not isinstance(raw, dict):
            raise ValueError(f"an action must be a JSON object, got {raw!r}")
        if unknown := set(raw) - set(ACTION_CHECKS):
            raise ValueError(f"unknown action keys {sorted(unknown)}; known: "
                             f"{sorted(ACTION_CHECKS)}")
        for key, value in raw.items():
            if not ACTION_CHECKS[key](value):
                raise ValueError(f"invalid action value {key}={value!r}")
        headers = {k: str(raw[k]) for k in ("retry_after", "retry_after_ms") if k in raw}
        return cls(**{**raw, **headers})


ACTION_CHECKS: dict[str, Callable[[Any], bool]] = {
    "status": lambda v: type(v) is int and 400 <= v <= 599,
    **dict.fromkeys(("retry_after", "retry_after_ms"), lambda v: isinstance(v, str | int)),
    **dict.fromkeys(("context_window", "hang", "close"), lambda v: isinstance(v, bool)),
    **dict.fromkeys(("delay_ms", "stream_error_after"), lambda v: type(v) is int and v >= 0),
    "text": lambda v: isinstance(v, str),
}


# -- the answer -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str  # JSON text

    def fragments(self) -> list[str]:
        size = ARGUMENT_FRAGMENT_CHARS
        return [self.arguments[i:i + size] for i in range(0, len(self.arguments), size)]


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    tool_call: ToolCall | None
    prompt_tokens: int
    completion_tokens: int
    truncated: bool  # cut at max_tokens

    def text_pieces(self) -> list[str]:  # the streamed deltas: words with trailing whitespace
        return re.findall(r"\S+\s*", self.text)

    @property
    def openai_finish_reason(self) -> str:
        return "tool_calls" if self.tool_call else "length" if self.truncated else "stop"

    @property
    def anthropic_stop_reason(self) -> str:
        return "tool_use" if self.tool_call else "max_tokens" if self.truncated else "end_turn"


def content_text(content: object) -> str:
    """The text of a message ``content``: a string or a list of typed parts (both APIs)."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return " ".join(part["text"] for part in parts if isinstance(part, dict)
                    and part.get("type") == "text" and isinstance(part.get("text"), str))


def is_tool_result(message: object) -> bool:
    """An OpenAI ``tool`` message, or an Anthropic user turn carrying ``tool_result`` blocks."""
    if not isinstance(message, dict):
        return False
    content = message.get("content")
    parts = content if isinstance(content, list) else []
    return message.get("role") == "tool" or any(
        isinstance(part, dict) and part.get("type") == "tool_result" for part in parts)


def prompt_words(body: JSON) -> int:
    texts = [content_text(body.get("system"))]
    texts += [content_text(m.get("content")) for m in body["messages"] if isinstance(m, dict)]
    return max(1, sum(len(text.split()) for text in texts))


def chosen_tool(body: JSON) -> str | None:
    """The tool the default answer calls, or None (no tools, choice "none", or after a result)."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if not isinstance(tools, list) or not tools or any(map(is_tool_result, body["messages"][-1:])):
        return None
    if choice == "none" or (isinstance(choice, dict) and choice.get("type") == "none"):
        return None

    def name_of(item: object) -> str | None:  # Anthropic {"name"}, OpenAI {"function": {"name"}}
        if not isinstance(item, dict):
            return None
        function = item.get("function")
        return item.get("name") or (function.get("name") if isinstance(function, dict) else None)

    return name_of(choice) or name_of(tools[0]) or "tool"


def compose_answer(body: JSON, name: str, text: str | None, call_id: str) -> Answer:
    prompt_tokens = prompt_words(body)
    tool = None if text is not None else chosen_tool(body)
    if tool is not None:
        arguments = json.dumps(TOOL_ARGUMENTS)
        return Answer("", ToolCall(call_id, tool, arguments), prompt_tokens,
                      len(arguments.split()), truncated=False)
    if text is None:
        users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        quoted = content_text(users[-1].get("content")) if users else ""
        text = f"{name} answers: {quoted[:QUOTED_PROMPT_CHARS]}"
    words = re.findall(r"\S+\s*", text)
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    truncated = isinstance(limit, int) and len(words) > limit
    if truncated:
        words = words[:limit]
        text = "".join(words).rstrip()
    return Answer(text, None, prompt_tokens, len(words), truncated)


# -- rendering ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StreamEvent:
    data: JSON | str
    event: str | None = None  # the SSE ``event:`` field (Anthropic names every event)
    content: bool = False  # a content delta, as counted by ``stream_error_after``

    def encode(self) -> bytes:
        data = self.data if isinstance(self.data, str) else json.dumps(self.data)
        prefix = f"event: {self.event}\n" if self.event else ""
        return f"{prefix}data: {data}\n\n".encode()


SAFE_FILTERS = {category: {"filtered": False, "severity": "safe"}
                for category in ("hate", "self_harm", "sexual", "violence")}
AZURE_PROMPT_FILTERS = [{"prompt_index": 0, "content_filter_results": SAFE_FILTERS}]


def openai_usage(answer: Answer) -> JSON:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens}


def openai_completion(answer: Answer, ids: Ids, model: str, azure: bool) -> JSON:
    message: JSON = {"role": "assistant", "content": answer.text or None, "refusal": None,
                     "annotations": []}
    if call := answer.tool_call:
        message["tool_calls"] = [{"id": call.call_id, "type": "function",
                                  "function": {"name": call.name, "arguments": call.arguments}}]
    choice: JSON = {"index": 0, "message": message, "logprobs": None,
                    "finish_reason": answer.openai_finish_reason}
    body: JSON = {"id": ids[0], "object": "chat.completion", "created": ids[1],
                  "model": model, "choices": [choice], "usage": openai_usage(answer),
                  "system_fingerprint": "fp_fake"}
    if azure:
        choice["content_filter_results"] = SAFE_FILTERS
        body["prompt_filter_results"] = AZURE_PROMPT_FILTERS
    return body


def openai_stream(answer: Answer, ids: Ids, model: str, azure: bool,
                  include_usage: bool) -> list[StreamEvent]:
    def chunk(delta: JSON, finish_reason: str | None = None) -> JSON:
        body: JSON = {"id": ids[0], "object": "chat.completion.chunk",
                      "created": ids[1], "model": model, "system_fingerprint": "fp_fake",
                      "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                   "finish_reason": finish_reason}]}
        if include_usage:
            body["usage"] = None
        return body

    events: list[StreamEvent] = []
    if azure:  # Azure's first chunk carries only the prompt filter verdicts
        events.append(StreamEvent({"id": "", "object": "", "created": 0, "model": "",
                                   "choices": [], "prompt_filter_results": AZURE_PROMPT_FILTERS}))
    if call := answer.tool_call:
        events.append(StreamEvent(chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": call.call_id, "type": "function",
             "function": {"name": call.name, "arguments": ""}}]})))
        events += [StreamEvent(chunk({"tool_calls": [{"index": 0,
                                                      "function": {"arguments": fragment}}]}),
                               content=True) for fragment in call.fragments()]
    else:
        events.append(StreamEvent(chunk({"role": "assistant", "content": "", "refusal": None})))
        events += [StreamEvent(chunk({"content": piece}), content=True)
                   for piece in answer.text_pieces()]
    events.append(StreamEvent(chunk({}, answer.openai_finish_reason)))
    if include_usage:
        events.append(StreamEvent({**chunk({}), "choices": [], "usage": openai_usage(answer)}))
    events.append(StreamEvent("[DONE]"))
    return events


def anthropic_message(answer: Answer, ids: Ids, model: str, *, streaming: bool = False) -> JSON:
    """The Messages API response; with ``streaming``, the empty one ``message_start`` carries."""
    if streaming:
        content: list[JSON] = []
    elif call := answer.tool_call:
        content = [{"type": "tool_use", "id": call.call_id, "name": call.name,
                    "input": json.loads(call.arguments)}]
    else:
        content = [{"type": "text", "text": answer.text}]
    return {"id": ids[0], "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": None if streaming else answer.anthropic_stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": answer.prompt_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0,
                      "output_tokens": 1 if streaming else answer.completion_tokens}}


def anthropic_stream(answer: Answer, ids: Ids, model: str) -> list[StreamEvent]:
    def event(kind: str, content: bool = False, **fields: Any) -> StreamEvent:
        return StreamEvent({"type": kind, **fields}, event=kind, content=content)

    if call := answer.tool_call:
        block: JSON = {"type": "tool_use", "id": call.call_id, "name": call.name, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": fragment}
                  for fragment in call.fragments()]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in answer.text_pieces()]
    return [
        event("message_start", message=anthropic_message(answer, ids, model, streaming=True)),
        event("content_block_start", index=0, content_block=block),
        event("ping"),
        *(event("content_block_delta", content=True, index=0, delta=delta) for delta in deltas),
        event("content_block_stop", index=0),
        event("message_delta", delta={"stop_reason": answer.anthropic_stop_reason,
                                      "stop_sequence": None},
              usage={"output_tokens": answer.completion_tokens}),
        event("message_stop"),
    ]


def with_stream_error(events: Sequence[StreamEvent], after: int,
                      error: StreamEvent) -> list[StreamEvent]:
    """``events`` cut right after the ``after``-th content delta, then ``error``."""
    positions = [i for i, event in enumerate(events) if event.content] or [0]
    cut = positions[0] if after == 0 else positions[min(after, len(positions)) - 1] + 1
    return [*events[:cut], error]


# -- errors ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ErrorReply:
    status: int
    body: JSON
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self, extra_headers: Mapping[str, str]) -> web.Response:
        return web.json_response(self.body, status=self.status,
                                 headers={**extra_headers, **self.headers})


def openai_error(status: int, message: str, error_type: str, code: str | None = None,
                 param: str | None = None) -> ErrorReply:
    return ErrorReply(status, {"error": {"message": message, "type": error_type,
                                         "param": param, "code": code}})


def azure_gateway_error(status: int, message: str) -> ErrorReply:
    """Errors raised by Azure's API gateway in front of the model use this shorter shape."""
    return ErrorReply(status, {"error": {"code": str(status), "message": message}})


def anthropic_error(status: int, error_type: str, message: str, request_id: str) -> ErrorReply:
    return ErrorReply(status, {"type": "error", "error": {"type": error_type, "message": message},
                               "request_id": request_id})


OPENAI_SERVER_ERRORS = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.", **dict.fromkeys((503, 529), "The server is overloaded or not ready yet."),
}
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                         403: "permission_error", 404: "not_found_error",
                         413: "request_too_large", 429: "rate_limit_error",
                         529: "overloaded_error"}
ANTHROPIC_MESSAGES = {500: "Internal server error", 529: "Overloaded",
                      429: "This request would exceed your organization's rate limit. "
                           "Please try again later."}


def auth_error(flavour: Flavour, missing: bool, request_id: str) -> ErrorReply:
    """401 for a missing or wrong key; the message never repeats what the client sent."""
    if flavour is Flavour.AZURE:
        return azure_gateway_error(401, "Access denied due to invalid subscription key or wrong "
                                   "API endpoint. Make sure to provide a valid key for an active "
                                   "subscription and use a correct regional API endpoint for "
                                   "your resource.")
    if flavour is Flavour.ANTHROPIC:
        return anthropic_error(401, "authentication_error",
                               "x-api-key header is required" if missing else "invalid x-api-key",
                               request_id)
    message = ("You didn't provide an API key. You need to provide your API key in an "
               "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
               if missing else "Incorrect API key provided. You can find your API key at "
               "https://platform.openai.com/account/api-keys.")
    return openai_error(401, message, "invalid_request_error", "invalid_api_key")


def status_error(flavour: Flavour, action: Action, api_version: str,
                 request_id: str) -> ErrorReply:
    """The body a provider sends with ``action.status``, plus the scripted retry headers."""
    status = action.status or 500
    wait = action.retry_after or "1"
    if flavour is Flavour.ANTHROPIC:
        error_type = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        reply = anthropic_error(status, error_type,
                                ANTHROPIC_MESSAGES.get(status, f"{error_type} ({status})"),
                                request_id)
    elif status == 429 and flavour is Flavour.AZURE:
        reply = azure_gateway_error(429, f"Requests to the ChatCompletions_Create Operation "
                                    f"under Azure OpenAI API version {api_version} have exceeded "
                                    f"call rate limit of your current OpenAI S0 pricing tier. "
                                    f"Please retry after {wait} seconds.")
    elif status == 429:
        reply = openai_error(429, f"Rate limit reached for requests. Please try again in {wait}s.",
                             "requests", "rate_limit_exceeded")
    else:
        reply = openai_error(status, OPENAI_SERVER_ERRORS.get(status, f"Scripted error {status}."),
                             "server_error" if status >= 500 else "invalid_request_error")
    headers = {"retry-after": action.retry_after} if action.retry_after else {}
    if action.retry_after_ms and flavour is not Flavour.ANTHROPIC:
        headers["retry-after-ms"] = action.retry_after_ms
    return ErrorReply(reply.status, reply.body, headers)


def context_window_error(flavour: Flavour, prompt_tokens: int, request_id: str) -> ErrorReply:
    if flavour is Flavour.ANTHROPIC:
        return anthropic_error(400, "invalid_request_error",
                               f"prompt is too long: {ANTHROPIC_CONTEXT_LIMIT + prompt_tokens} "
                               f"tokens > {ANTHROPIC_CONTEXT_LIMIT} maximum", request_id)
    return openai_error(400, f"This model's maximum context length is {OPENAI_CONTEXT_LIMIT} "
                        f"tokens. However, your messages resulted in "
                        f"{OPENAI_CONTEXT_LIMIT + prompt_tokens} tokens. Please reduce the "
                        f"length of the messages.", "invalid_request_error",
                        "context_length_exceeded", "messages")


def stream_error_event(flavour: Flavour) -> StreamEvent:
    if flavour is Flavour.ANTHROPIC:
        return StreamEvent({"type": "error", "error": {"type": "overloaded_error",
                                                       "message": "Overloaded"}}, event="error")
    return StreamEvent(openai_error(500, OPENAI_SERVER_ERRORS[500], "server_error").body)


def check_request(flavour: Flavour, headers: Mapping[str, str], query: Mapping[str, str],
                  body: object, api_key: str | None, request_id: str) -> ErrorReply | None:
    """Why the provider would refuse this request before generating anything, if it would."""
    if flavour is Flavour.AZURE and "api-version" not in query:
        return azure_gateway_error(404, "Resource not found")
    if api_key is not None:
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        bearer = bearer.strip() if scheme.lower() == "bearer" else ""
        # Anthropic also takes the key as a bearer token (the installed SDK sends it that way).
        sent = {Flavour.OPENAI: bearer, Flavour.AZURE: headers.get("api-key", ""),
                Flavour.ANTHROPIC: headers.get("x-api-key") or bearer}[flavour]
        if not hmac.compare_digest(sent.encode(), api_key.encode()):
            return auth_error(flavour, not sent, request_id)
    if flavour is Flavour.ANTHROPIC and not headers.get("anthropic-version"):
        return anthropic_error(400, "invalid_request_error",
                               "anthropic-version: header is required", request_id)
    required = {"messages": list, **({"max_tokens": int} if flavour is Flavour.ANTHROPIC else {}),
                **({} if flavour is Flavour.AZURE else {"model": str})}
    fields = body if isinstance(body, dict) else {}
    problem = next((f"{key}: Field required" for key, kind in required.items()
                    if not isinstance(fields.get(key), kind)), None)
    if problem is None:
        return None
    if flavour is Flavour.ANTHROPIC:
        return anthropic_error(400, "invalid_request_error", problem, request_id)
    return openai_error(400, problem, "invalid_request_error")


# -- the server -----------------------------------------------------------------------------

@dataclass(slots=True)
class FakeState:
    name: str
    api_key: str | None
    actions: collections.deque[Action] = field(default_factory=collections.deque)
    requests: collections.deque[JSON] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_RECORDED_REQUESTS))
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_id(self, prefix: str) -> str:
        return f"{prefix}fake{next(self.counter):012d}"


STATE = web.AppKey("state", FakeState)
REQUEST_ID_HEADER = {Flavour.OPENAI: "x-request-id", Flavour.AZURE: "apim-request-id",
                     Flavour.ANTHROPIC: "request-id"}


async def read_json(request: web.Request) -> object:
    try:
        return json.loads(await request.read())
    except ValueError:
        return None


async def serve_inference(request: web.Request, flavour: Flavour) -> web.StreamResponse:
    state = request.app[STATE]
    body = await read_json(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    state.requests.append({"path": request.path, "query": dict(request.query),
                           "headers": headers, "body": body})
    request_id = state.next_id("req_")
    id_header = {REQUEST_ID_HEADER[flavour]: request_id}
    rejection = check_request(flavour, headers, request.query, body, state.api_key, request_id)
    if rejection is not None:
        return rejection.response(id_header)
    assert isinstance(body, dict)
    action = state.actions.popleft() if state.actions else Action()

    if action.delay_ms:
        await asyncio.sleep(action.delay_ms / 1000)
    if action.close or action.hang:
        if action.close and request.transport is not None:
            request.transport.close()
        await asyncio.Event().wait()  # until aiohttp cancels the handler: client gone, or shutdown
    if action.status is not None:
        return status_error(flavour, action, request.query.get("api-version", ""),
                            request_id).response(id_header)

    anthropic = flavour is Flavour.ANTHROPIC
    response_prefix, call_prefix = ("msg_", "toolu_") if anthropic else ("chatcmpl-", "call_")
    answer = compose_answer(body, state.name, action.text, state.next_id(call_prefix))
    if action.context_window:
        return context_window_error(flavour, answer.prompt_tokens,
                                    request_id).response(id_header)
    ids = (state.next_id(response_prefix), int(time.time()))
    model = request.match_info.get("deployment") or str(body.get("model"))
    azure = flavour is Flavour.AZURE
    if body.get("stream") is not True:
        rendered = (anthropic_message(answer, ids, model) if anthropic
                    else openai_completion(answer, ids, model, azure))
        return web.json_response(rendered, headers=id_header)

    if anthropic:
        events = anthropic_stream(answer, ids, model)
    else:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        events = openai_stream(answer, ids, model, azure, include_usage)
    if action.stream_error_after is not None:
        events = with_stream_error(events, action.stream_error_after,
                                   stream_error_event(flavour))
    response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8",
                                           "cache-control": "no-cache", **id_header})
    await response.prepare(request)
    for event in events:
        await response.write(event.encode())
    await response.write_eof()
    return response


async def script(request: web.Request) -> web.Response:
    """POST appends ``{"actions": [...]}`` to the queue; DELETE empties it."""
    queue = request.app[STATE].actions
    if request.method == "DELETE":
        queue.clear()
        return web.json_response({"queued": 0})
    payload = await read_json(request)
    try:
        if not isinstance(payload, dict) or not isinstance(payload.get("actions"), list):
            raise ValueError('expected {"actions": [...]}')
        actions = [Action.parse(raw) for raw in payload["actions"]]
    except ValueError as error:
        return web.json_response({"error": str(error)}, status=400)
    queue.extend(actions)
    return web.json_response({"queued": len(queue)})


async def received_requests(request: web.Request) -> web.Response:
    """GET lists the recorded inference requests, oldest first; DELETE forgets them."""
    recorded = request.app[STATE].requests
    if request.method == "DELETE":
        recorded.clear()
    return web.json_response({"requests": list(recorded)})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "name": request.app[STATE].name})


def build_app(name: str, api_key: str | None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = FakeState(name, api_key)
    for path, flavour in (("/v1/chat/completions", Flavour.OPENAI),
                          ("/openai/deployments/{deployment}/chat/completions", Flavour.AZURE),
                          ("/v1/messages", Flavour.ANTHROPIC)):
        app.router.add_post(path, functools.partial(serve_inference, flavour=flavour))
    app.add_routes([web.post("/_fake/script", script), web.delete("/_fake/script", script),
                    web.get("/_fake/requests", received_requests),
                    web.delete("/_fake/requests", received_requests), web.get("/health", health)])
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-key", help="require this key (401 otherwise)")
    parser.add_argument("--tls-cert", help="PEM certificate chain; serve HTTPS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert (default: in it)")
    parser.add_argument("--name", default="fake", help="prefix of the default answer")
    args = parser.parse_args(argv)
    ssl_context = None
    if args.tls_cert:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    try:
        sock = socket.create_server((args.host, args.port))
    except OSError as error:
        parser.exit(2, f"fake provider {args.name}: cannot listen on {args.host}:{args.port}: "
                       f"{error}\n")
    host, port = sock.getsockname()[:2]
    print(f"fake provider {args.name} listening on {'https' if ssl_context else 'http'}://"
          f"{host}:{port}", flush=True)
    # handler_cancellation: a hung request ends when its client goes away.
    web.run_app(build_app(args.name, args.api_key), sock=sock, ssl_context=ssl_context,
                print=None, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

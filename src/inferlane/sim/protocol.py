"""The OpenAI wire format as vLLM speaks it: request validation and response bodies.

Pure functions and small values, no aiohttp: ``server.py`` calls ``parse_request`` on the decoded
JSON, feeds the engine, then uses the builders here. Error bodies follow vLLM's shape
``{"error": {"message", "type", "param", "code"}}`` with vLLM's ``type`` names and the HTTP status
as ``code``. Streaming chunks are spliced from per-request byte templates because the simulator
writes one chunk per token for many sequences at once.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from inferlane.sim.tokens import Prompt, PromptError, parse_prompts, render_chat

# The OpenAI SDK's exception names, as vLLM uses them (vLLM itself never answers 429: that
# status comes from a rate limiter in front of it, simulated by the throttle fault).
_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 429: "RateLimitError",
                500: "InternalServerError"}


class APIError(Exception):
    """An error answered as OpenAI error JSON with the given HTTP status (and ``headers``,
    e.g. a 429's ``Retry-After``)."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.headers: Mapping[str, str] = headers or {}

    def body(self) -> bytes:
        return orjson.dumps({"error": {
            "message": self.message,
            "type": _ERROR_TYPES.get(self.status, "InternalServerError"),
            "param": self.param,
            "code": self.status,
        }})


class Endpoint(StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"


@dataclass(frozen=True, slots=True)
class ServedModels:
    """What one replica serves: a base model and the LoRA adapters on top of it."""

    base: str
    adapters: tuple[str, ...] = ()
    max_model_len: int = 16384

    def resolve(self, model: object) -> tuple[str, str | None]:
        """(name to echo, adapter or None); a missing model means the base model, as vLLM."""
        if model is None:
            return self.base, None
        if not isinstance(model, str):
            raise APIError(400, "'model' must be a string", param="model")
        if model == self.base:
            return model, None
        if model in self.adapters:
            return model, model
        raise APIError(404, f"The model `{model}` does not exist.", param="model")


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    endpoint: Endpoint
    model: str
    lora: str | None
    prompts: tuple[Prompt, ...]
    n: int = 1
    max_tokens: int | None = None
    stream: bool = False
    include_usage: bool = False
    # max_tokens caps a natural-length output (Anthropic) instead of fixing the length (OpenAI).
    natural_stop: bool = False

    @property
    def prompt_tokens(self) -> int:
        return sum(p.num_tokens for p in self.prompts)


def _positive_int(body: dict[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise APIError(400, f"'{field}' must be an integer >= 1, got {value!r}", param=field)
    return value


def parse_request(endpoint: Endpoint, body: object, served: ServedModels) -> ParsedRequest:
    """Validate a decoded request body the way vLLM does (400 / 404 as ``APIError``)."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    model, lora = served.resolve(body.get("model"))
    try:
        if endpoint is Endpoint.CHAT:
            if "messages" not in body:
                raise APIError(400, "'messages' is a required field", param="messages")
            prompts = [Prompt.from_text(render_chat(body["messages"], body.get("tools")))]
        else:
            field = "prompt" if endpoint is Endpoint.COMPLETION else "input"
            if field not in body:
                raise APIError(400, f"'{field}' is a required field", param=field)
            prompts = parse_prompts(body[field], field)
    except PromptError as exc:
        raise APIError(400, str(exc), param="messages" if endpoint is Endpoint.CHAT else None
                       ) from exc
    limit = served.max_model_len
    for prompt in prompts:
        if prompt.num_tokens >= limit + (endpoint is Endpoint.EMBEDDING):
            raise APIError(400, (
                f"This model's maximum context length is {limit} tokens. However, your request "
                f"has {prompt.num_tokens} input tokens. Please reduce the length of the input."))
    if endpoint is Endpoint.EMBEDDING:
        return ParsedRequest(endpoint, model, lora, tuple(prompts))

    max_tokens = _positive_int(body, "max_completion_tokens") if endpoint is Endpoint.CHAT \
        else None
    if max_tokens is None:
        max_tokens = _positive_int(body, "max_tokens")
    n = _positive_int(body, "n") or 1
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "'stream' must be a boolean", param="stream")
    stream_options = body.get("stream_options")
    if stream_options is not None and not stream:
        raise APIError(400, "Stream options can only be defined when `stream=True`.",
                       param="stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    return ParsedRequest(endpoint, model, lora, tuple(prompts), n, max_tokens, stream,
                         include_usage)


# -- responses -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChoiceResult:
    index: int
    text: str
    finish_reason: str
    completion_tokens: int


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None
          ) -> dict[str, Any]:
    details = None if cached_tokens is None else {"cached_tokens": cached_tokens}
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens, "prompt_tokens_details": details}


def generation_body(parsed: ParsedRequest, response_id: str, created: int,
                    choices: Sequence[ChoiceResult], cached_tokens: int) -> bytes:
    completion_tokens = sum(c.completion_tokens for c in choices)
    if parsed.endpoint is Endpoint.CHAT:
        body: dict[str, Any] = {
            "id": response_id, "object": "chat.completion", "created": created,
            "model": parsed.model,
            "choices": [{
                "index": c.index,
                "message": {"role": "assistant", "content": c.text, "refusal": None,
                            "annotations": None, "audio": None, "function_call": None,
                            "tool_calls": [], "reasoning_content": None},
                "logprobs": None, "finish_reason": c.finish_reason, "stop_reason": None,
            } for c in choices],
            "service_tier": None, "system_fingerprint": None,
        }
    else:
        body = {
            "id": response_id, "object": "text_completion", "created": created,
            "model": parsed.model,
            "choices": [{"index": c.index, "text": c.text, "logprobs": None,
                         "finish_reason": c.finish_reason, "stop_reason": None,
                         "prompt_logprobs": None} for c in choices],
            "service_tier": None, "system_fingerprint": None,
        }
    body["usage"] = usage(parsed.prompt_tokens, completion_tokens, cached_tokens)
    return orjson.dumps(body)


def embedding_vector(prompt: Prompt, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from the prompt text."""
    digest = hashlib.shake_128(prompt.fingerprint().to_bytes(8, "little")).digest(2 * dimensions)
    raw = [int.from_bytes(digest[i:i + 2], "little") / 32767.5 - 1.0
           for i in range(0, 2 * dimensions, 2)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def embedding_body(parsed: ParsedRequest, response_id: str, created: int, dimensions: int
                   ) -> bytes:
    return orjson.dumps({
        "id": response_id, "object": "list", "created": created, "model": parsed.model,
        "data": [{"index": i, "object": "embedding", "embedding": embedding_vector(p, dimensions)}
                 for i, p in enumerate(parsed.prompts)],
        "usage": usage(parsed.prompt_tokens, 0),
    })


def models_body(served: ServedModels, created: int) -> bytes:
    def card(model_id: str, root: str, parent: str | None, max_len: int | None
             ) -> dict[str, Any]:
        return {
            "id": model_id, "object": "model", "created": created, "owned_by": "vllm",
            "root": root, "parent": parent, "max_model_len": max_len,
            "permission": [{
                "id": f"modelperm-{model_id}", "object": "model_permission", "created": created,
                "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                "organization": "*", "group": None, "is_blocking": False,
            }],
        }

    data = [card(served.base, served.base, None, served.max_model_len)]
    data.extend(card(name, f"/adapters/{name}", served.base, None) for name in served.adapters)
    return orjson.dumps({"object": "list", "data": data})


class ChunkTemplates:
    """Byte templates of one streamed response: a token chunk is ``prefix + word + suffix``."""

    __slots__ = ("_done", "_head", "_text_key", "endpoint", "response_id")

    def __init__(self, parsed: ParsedRequest, response_id: str, created: int) -> None:
        self.endpoint = parsed.endpoint
        self.response_id = response_id
        kind = "chat.completion.chunk" if parsed.endpoint is Endpoint.CHAT else "text_completion"
        self._head = (b'data: {"id":' + orjson.dumps(response_id) + b',"object":"'
                      + kind.encode() + b'","created":' + str(created).encode() + b',"model":'
                      + orjson.dumps(parsed.model) + b',"choices":[{"index":')
        self._text_key = b',"delta":{"content":' if parsed.endpoint is Endpoint.CHAT \
            else b',"text":'
        self._done = b"data: [DONE]\n\n"

    def role(self, index: int) -> bytes:
        return (self._head + str(index).encode()
                + b',"delta":{"role":"assistant","content":""},"logprobs":null,'
                  b'"finish_reason":null}]}\n\n')

    def token(self, index: int, word_json: bytes, finish_reason: str | None) -> bytes:
        close = b"}" if self.endpoint is Endpoint.CHAT else b""
        tail = b',"logprobs":null,"finish_reason":null}]}\n\n' if finish_reason is None else (
            b',"logprobs":null,"finish_reason":"' + finish_reason.encode()
            + b'","stop_reason":null}]}\n\n')
        return self._head + str(index).encode() + self._text_key + word_json + close + tail

    def usage(self, parsed: ParsedRequest, created: int, completion_tokens: int) -> bytes:
        kind = "chat.completion.chunk" if parsed.endpoint is Endpoint.CHAT else "text_completion"
        return b"data: " + orjson.dumps({
            "id": self.response_id, "object": kind, "created": created, "model": parsed.model,
            "choices": [],
            "usage": {"prompt_tokens": parsed.prompt_tokens,
                      "total_tokens": parsed.prompt_tokens + completion_tokens,
                      "completion_tokens": completion_tokens},
        }) + b"\n\n"

    @property
    def done(self) -> bytes:
        return self._done

"""One attempt's request in the backend's dialect, and its answer back in the client's.

Pure (bytes and dicts in, bytes out); the proxy does the I/O. Four cases, by client API and
backend dialect:

=================== ================ ==========================================================
client              backend          what happens
=================== ================ ==========================================================
OpenAI (chat, …)    OpenAI-style     relayed as is (only the model name and path change)
OpenAI chat         Anthropic        ``chat_request_to_messages``; answer, stream and errors back
Anthropic messages  OpenAI-style     ``messages_request_to_chat``; answer, stream and errors back
Anthropic messages  Anthropic        relayed as is
=================== ================ ==========================================================

OpenAI completions and embeddings have no Anthropic equivalent: a 400 naming the provider.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from inferlane.errors import ANTHROPIC_ERROR_TYPES, BadRequest, UpstreamProtocolError
from inferlane.providers.runtime import Dialect, ProviderRuntime
from inferlane.providers.sse import SseEventParser
from inferlane.providers.translate import (
    DONE,
    ChatChunksToMessagesStream,
    MessagesStreamToChatChunks,
    UpstreamStreamError,
    chat_request_to_messages,
    chat_response_to_messages,
    encode_chunk,
    encode_event,
    messages_request_to_chat,
    messages_response_to_chat,
)
from inferlane.providers.translate.anthropic_to_openai import anthropic_usage
from inferlane.providers.translate.openai_to_anthropic import chat_usage


class ClientApi(enum.StrEnum):
    """The API a client called, by its path."""

    CHAT = "/v1/chat/completions"
    COMPLETIONS = "/v1/completions"
    EMBEDDINGS = "/v1/embeddings"
    MESSAGES = "/v1/messages"

    @property
    def dialect(self) -> Dialect:
        return "anthropic" if self is ClientApi.MESSAGES else "openai"

    @property
    def openai_suffix(self) -> str:
        """The path after ``/v1`` on an OpenAI-style server."""
        return "/chat/completions" if self is ClientApi.MESSAGES else self.value[3:]


@dataclass(frozen=True, slots=True)
class Exchange:
    """What to send for one attempt (``headers`` may carry a credential: never log them)."""

    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    translation: Translation | None  # None: the answer is relayed as is


def pool_exchange(api: ClientApi, document: dict[str, Any], body: bytes, upstream_model: str,
                  path: str, *, rewritten: bool) -> Exchange:
    """A pool speaks OpenAI: Anthropic clients are translated, others relayed."""
    if api is ClientApi.MESSAGES:
        chat = messages_request_to_chat(document, model=upstream_model)
        return Exchange("/v1/chat/completions", orjson.dumps(chat), (),
                        Translation(api, "openai", document, request_model=upstream_model))
    if rewritten:
        body = orjson.dumps({**document, "model": upstream_model})
    return Exchange(path, body, (), None)


def provider_exchange(provider: ProviderRuntime, api: ClientApi, document: dict[str, Any],
                      body: bytes) -> Exchange:
    """The request for ``provider`` in its dialect, with its credential headers."""
    model = provider.model_name_override or str(document.get("model", ""))
    headers = list(provider.headers)
    credential = provider.credential.reveal() if provider.credential is not None else None
    if provider.dialect == "anthropic":
        if api in (ClientApi.COMPLETIONS, ClientApi.EMBEDDINGS):
            raise BadRequest(f"{api.value} is not supported by Anthropic provider "
                             f"{provider.key}: use /v1/chat/completions or /v1/messages.")
        headers.append(("anthropic-version", provider.anthropic_version))
        if credential is not None:
            headers.append(("x-api-key", credential))
        path = f"{provider.base_path}/v1/messages"
        if api is ClientApi.MESSAGES:
            return Exchange(path, _with_model(document, body, model), tuple(headers), None)
        request = chat_request_to_messages(
            document, model=model, default_max_tokens=provider.anthropic_max_tokens,
            sampling_parameters=provider.sampling_parameters)
        return Exchange(path, orjson.dumps(request), tuple(headers),
                        Translation(api, "anthropic", document, request_model=model))
    if provider.type == "azure-openai":
        deployment = quote(provider.azure_deployment or model, safe="")
        path = (f"{provider.base_path}/openai/deployments/{deployment}{api.openai_suffix}"
                f"?api-version={provider.azure_api_version}")
        if credential is not None:
            headers.append(("api-key", credential))
    else:
        path = f"{provider.base_path}{api.openai_suffix}"
        if credential is not None:
            headers.append(("authorization", f"Bearer {credential}"))
    if api is ClientApi.MESSAGES:
        chat = messages_request_to_chat(document, model=model)
        return Exchange(path, orjson.dumps(chat), tuple(headers),
                        Translation(api, "openai", document, request_model=model))
    return Exchange(path, _with_model(document, body, model), tuple(headers), None)


def _with_model(document: dict[str, Any], body: bytes, model: str) -> bytes:
    if document.get("model") == model:
        return body
    return orjson.dumps({**document, "model": model})


class Translation:
    """Turns one attempt's answer (body, stream or error) into the client's dialect."""

    __slots__ = (
        "_api",
        "_failed",
        "_model",
        "_parser",
        "_to_anthropic",
        "_to_openai",
        "_upstream",
        "completion_tokens",
        "prompt_tokens",
        "usage_seen",
    )

    def __init__(self, api: ClientApi, upstream: Dialect, document: Mapping[str, Any], *,
                 request_model: str) -> None:
        self._api = api
        self._upstream = upstream
        self._model = str(document.get("model") or request_model)
        self._parser = SseEventParser()
        self._to_openai: MessagesStreamToChatChunks | None = None
        self._to_anthropic: ChatChunksToMessagesStream | None = None
        if api.dialect == "openai":
            options = document.get("stream_options")
            include = isinstance(options, Mapping) and options.get("include_usage") is True
            self._to_openai = MessagesStreamToChatChunks(
                model=self._model, created=int(time.time()),
                request_id="chatcmpl-" + uuid.uuid4().hex, include_usage=include)
        else:
            self._to_anthropic = ChatChunksToMessagesStream(
                model=self._model, message_id="msg_" + uuid.uuid4().hex)
        self._failed = False
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.usage_seen = False

    @property
    def usage(self) -> dict[str, int] | None:
        """The counts seen so far, in OpenAI's shape (what ``dataplane.sse.Usage.take``
        reads), or None before any."""
        if not self.usage_seen:
            return None
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    def body(self, payload: bytes) -> bytes:
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("The backend's answer is not JSON.") from None
        usage = document.get("usage") if isinstance(document, dict) else None
        if self._to_openai is not None:
            chat = messages_response_to_chat(document, model=self._model,
                                             created=int(time.time()),
                                             request_id="chatcmpl-" + uuid.uuid4().hex)
            if isinstance(usage, Mapping):
                self._take(chat.get("usage"), "prompt_tokens", "completion_tokens")
            return orjson.dumps(chat)
        message = chat_response_to_messages(document, model=self._model,
                                            message_id="msg_" + uuid.uuid4().hex)
        # OpenAI's counts: prompt tokens include cached ones (Anthropic's input_tokens do not).
        self._take(usage, "prompt_tokens", "completion_tokens")
        return orjson.dumps(message)

    def error(self, status: int, payload: bytes) -> bytes:
        """An upstream error body in the client's error shape (message kept, type mapped)."""
        message = _error_message(payload) or f"The backend answered HTTP {status}."
        if self._api.dialect == "openai":
            kind = "invalid_request_error" if 400 <= status < 500 else "upstream_error"
            return orjson.dumps({"error": {"message": message, "type": kind, "param": None,
                                           "code": None}})
        return orjson.dumps({"type": "error", "error": {
            "type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message}})

    def stream(self, chunk: bytes) -> bytes:
        """Upstream SSE bytes in, the client's SSE bytes out (may be empty)."""
        out: list[bytes] = []
        for event, data in self._parser.feed(chunk):
            out.append(self._event(event, data))
        return b"".join(out)

    def finish(self) -> bytes:
        """The closing frames for an upstream body that has ended."""
        if self._to_anthropic is not None:
            return b"".join(encode_event(n, d) for n, d in self._to_anthropic.finish())
        assert self._to_openai is not None
        if self._to_openai.done or self._failed:
            return b""
        return self.broken("the provider ended the stream without message_stop")

    def broken(self, reason: str) -> bytes:
        """The in-stream error frame for an upstream that broke off."""
        if self._to_anthropic is not None:
            self._to_anthropic.done = True
            return encode_event("error", {"type": "error", "error": {
                "type": "api_error", "message": f"The backend broke off the stream ({reason})."}})
        return encode_chunk({"error": {"message": f"The provider broke off the stream "
                                                  f"({reason}).", "type": "upstream_error",
                                       "param": None, "code": "upstream_stream_interrupted"}})

    def _event(self, event: str, data: str) -> bytes:
        if self._to_anthropic is not None:
            if data == "[DONE]":
                return b"".join(encode_event(n, d) for n, d in self._to_anthropic.finish())
            chunk = _json(data)
            if chunk is None:
                return b""
            self._take(chunk.get("usage"), "prompt_tokens", "completion_tokens")
            return b"".join(encode_event(n, d) for n, d in self._to_anthropic.feed(chunk))
        assert self._to_openai is not None
        parsed = _json(data)
        if parsed is None or self._to_openai.done or self._failed:
            return b""
        if event == "message_start" and isinstance(parsed.get("message"), Mapping):
            self._take(chat_usage(parsed["message"].get("usage") or {}), "prompt_tokens",
                       "completion_tokens")
        elif event == "message_delta" and isinstance(parsed.get("usage"), Mapping):
            usage = chat_usage(parsed["usage"])
            if parsed["usage"].get("input_tokens") is None:
                usage["prompt_tokens"] = self.prompt_tokens
            self._take(usage, "prompt_tokens", "completion_tokens")
        try:
            chunks = self._to_openai.feed(event, parsed)
        except UpstreamStreamError as exc:
            self._failed = True  # the error frame ends the client's stream
            return exc.to_sse()
        out = b"".join(encode_chunk(c) for c in chunks)
        return out + DONE if self._to_openai.done else out

    def _take(self, usage: Any, prompt: str, completion: str) -> None:
        if isinstance(usage, Mapping):
            if isinstance(usage.get(prompt), int):
                self.prompt_tokens = usage[prompt]
            if isinstance(usage.get(completion), int):
                self.completion_tokens = usage[completion]
            self.usage_seen = True


def _json(data: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _error_message(payload: bytes) -> str | None:
    """The message of an OpenAI- or Anthropic-shaped error body."""
    try:
        document = orjson.loads(payload[:65536])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    error = document.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:2000]
    if isinstance(error, str):  # TGI, Ollama
        return error[:2000]
    if isinstance(document.get("message"), str):  # vLLM / SGLang {"object": "error", ...}
        return str(document["message"])[:2000]
    return None


__all__ = ["ClientApi", "Exchange", "Translation", "anthropic_usage", "pool_exchange",
           "provider_exchange"]

"""The simulator as an Anthropic provider: ``POST /v1/messages`` on top of the chat path.

No second Anthropic format lives here: the request is translated to an OpenAI chat request with
``inferlane.providers.translate`` and parsed like one, the engine runs it as a chat completion,
and the chat path's OpenAI body or SSE frames are translated back. ``server.py`` calls
``parse_messages`` instead of ``parse_request``, renders errors with ``error_body`` and hands a
``MessagesResponse`` to the shared answer path.

One difference from chat: ``max_tokens`` (required by the Messages API) caps the output instead
of fixing its length, so an answer ends at its natural length with ``end_turn`` when that fits,
as Anthropic's models do. Credentials (``x-api-key``) and ``anthropic-version`` are not checked.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable

import orjson

from inferlane.errors import BadRequest
from inferlane.providers.translate import (
    ChatChunksToMessagesStream,
    chat_response_to_messages,
    encode_event,
    messages_request_to_chat,
)
from inferlane.sim.protocol import APIError, Endpoint, ParsedRequest, ServedModels, parse_request

_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 429: "rate_limit_error"}
_DONE = b"[DONE]"


def parse_messages(body: object, served: ServedModels) -> ParsedRequest:
    """Validate an Anthropic Messages request and parse it as the chat request it becomes."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str):  # required by the Messages API, unlike OpenAI's on vLLM
        raise APIError(400, "'model' is required and must be a string.", param="model")
    try:
        chat = messages_request_to_chat(body, model=model)
    except BadRequest as exc:
        raise APIError(400, exc.message, param=exc.param) from exc
    return dataclasses.replace(parse_request(Endpoint.CHAT, chat, served), natural_stop=True)


def error_body(error: APIError) -> bytes:
    """Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}}``."""
    return orjson.dumps({"type": "error", "error": {
        "type": _ERROR_TYPES.get(error.status, "api_error"), "message": error.message}})


class MessagesResponse:
    """Translates one request's chat answer (body or SSE frames) into an Anthropic message."""

    __slots__ = ("_model", "_stream", "message_id")

    def __init__(self, model: str) -> None:
        self._model = model
        self.message_id = "msg_" + uuid.uuid4().hex
        self._stream = ChatChunksToMessagesStream(model=model, message_id=self.message_id)

    def body(self, completion: bytes) -> bytes:
        """The Anthropic message for a ``chat.completion`` body."""
        return orjson.dumps(chat_response_to_messages(
            orjson.loads(completion), model=self._model, message_id=self.message_id))

    def frames(self, frames: Iterable[bytes]) -> bytes:
        """Anthropic SSE events for chat SSE frames (each ``data: ...\\n\\n``, ``[DONE]`` last)."""
        events = []
        for frame in frames:
            payload = frame.removeprefix(b"data: ").strip()
            events += self._stream.finish() if payload == _DONE \
                else self._stream.feed(orjson.loads(payload))
        return b"".join(encode_event(name, data) for name, data in events)

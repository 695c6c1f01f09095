"""Pure schema translation between the OpenAI Chat Completions and Anthropic Messages APIs.

Where it sits: between a route and a provider whose API differs from the client's. Requests,
responses and stream events go in as dicts and come out as dicts (or SSE bytes); the provider
adapters do the I/O. Unsupported request fields are 400s (``BadRequest``) naming the field,
never silently dropped; ``CHAT_FIELDS`` and ``MESSAGES_FIELDS`` list how every field is handled
and README.md explains the choices.
"""

from __future__ import annotations

from inferlane.providers.translate._fields import FieldRule, Handling
from inferlane.providers.translate.anthropic_to_openai import (
    MESSAGES_FIELDS,
    ChatChunksToMessagesStream,
    chat_response_to_messages,
    encode_event,
    messages_request_to_chat,
)
from inferlane.providers.translate.openai_stream import (
    DONE,
    MessagesStreamToChatChunks,
    UpstreamStreamError,
    encode_chunk,
)
from inferlane.providers.translate.openai_to_anthropic import (
    CHAT_FIELDS,
    chat_request_to_messages,
    messages_response_to_chat,
)

__all__ = [
    "CHAT_FIELDS",
    "DONE",
    "MESSAGES_FIELDS",
    "ChatChunksToMessagesStream",
    "FieldRule",
    "Handling",
    "MessagesStreamToChatChunks",
    "UpstreamStreamError",
    "chat_request_to_messages",
    "chat_response_to_messages",
    "encode_chunk",
    "encode_event",
    "messages_request_to_chat",
    "messages_response_to_chat",
]

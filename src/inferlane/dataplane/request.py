"""Reading and checking a client's request, and answering it with an error in its dialect.

The OpenAI endpoints answer errors as OpenAI error JSON; ``/v1/messages`` answers Anthropic's
``{"type": "error", "error": {...}}`` so both official SDKs raise their own error classes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from inferlane.errors import BadRequest, PayloadTooLarge, RequestError
from inferlane.providers.exchange import ClientApi
from inferlane.routing.objectives import DEADLINE_HEADER, Objective, parse_deadline_ms

MAX_MODEL_NAME = 512


def error_response(error: RequestError, request_id: str,
                   api: ClientApi = ClientApi.CHAT) -> web.Response:
    headers = {"x-request-id": request_id, **error.headers}
    body = error.to_anthropic_body() if api is ClientApi.MESSAGES else error.to_body()
    return web.Response(status=error.status, body=body, content_type="application/json",
                        headers=headers)


async def read_body(request: web.Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"Request body of {length} bytes exceeds the limit of {limit} bytes.")
    if length is not None:
        # Fast path: aiohttp already buffers small bodies; read exactly what was announced.
        try:
            return await request.content.readexactly(length) if length else b""
        except asyncio.IncompleteReadError:
            raise BadRequest(
                f"Request body ended before the announced {length} bytes."
            ) from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_request(body: bytes) -> tuple[dict[str, Any], str]:
    """The JSON document and its ``model``; BadRequest with a precise reason otherwise."""
    if not body:
        raise BadRequest("Request body is empty; expected a JSON object.")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}.") from None
    if not isinstance(document, dict):
        raise BadRequest("Request body must be a JSON object.")
    model = document.get("model")
    if model is None:
        raise BadRequest("Missing required parameter: 'model'.", param="model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("Parameter 'model' must be a non-empty string.", param="model")
    if len(model) > MAX_MODEL_NAME or not model.isprintable():
        # The name travels on as a header (X-Gateway-Model-Name) and a metric label.
        raise BadRequest(
            f"Parameter 'model' must be at most {MAX_MODEL_NAME} printable characters.",
            param="model",
        )
    return document, model


def time_budget(headers: dict[str, str], objective: Objective) -> float | None:
    """Seconds the client (``x-inferlane-deadline-ms``) or the objective allows."""
    try:
        budget = parse_deadline_ms(headers.get(DEADLINE_HEADER))
    except ValueError as exc:
        raise BadRequest(f"{exc}.") from None
    return budget if budget is not None else objective.deadline

"""Request validation and response bodies in vLLM's OpenAI dialect."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from inferlane.sim.protocol import (
    APIError,
    ChunkTemplates,
    Endpoint,
    ServedModels,
    embedding_vector,
    models_body,
    parse_request,
)
from inferlane.sim.tokens import WORD_JSON, Prompt

SERVED = ServedModels("base", ("sql", "chat"), max_model_len=64)
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("endpoint", "body", "status", "param"),
    [
        (Endpoint.CHAT, [], 400, None),
        (Endpoint.CHAT, {"model": "nope", "messages": MESSAGES}, 404, "model"),
        (Endpoint.CHAT, {"model": 3, "messages": MESSAGES}, 400, "model"),
        (Endpoint.CHAT, {"model": "base"}, 400, "messages"),
        (Endpoint.CHAT, {"messages": []}, 400, "messages"),
        (Endpoint.CHAT, {"messages": MESSAGES, "max_tokens": 0}, 400, "max_tokens"),
        (Endpoint.CHAT, {"messages": MESSAGES, "max_completion_tokens": "5"}, 400,
         "max_completion_tokens"),
        (Endpoint.CHAT, {"messages": MESSAGES, "n": 0}, 400, "n"),
        (Endpoint.CHAT, {"messages": MESSAGES, "stream": "yes"}, 400, "stream"),
        (Endpoint.CHAT, {"messages": MESSAGES, "stream_options": {"include_usage": True}}, 400,
         "stream_options"),
        (Endpoint.COMPLETION, {"model": "base"}, 400, "prompt"),
        (Endpoint.COMPLETION, {"prompt": "x" * 256}, 400, None),  # 64 tokens: no room left
        (Endpoint.EMBEDDING, {"model": "base"}, 400, "input"),
    ],
)
def test_rejections(endpoint: Endpoint, body: object, status: int, param: str | None) -> None:
    with pytest.raises(APIError) as info:
        parse_request(endpoint, body, SERVED)
    assert (info.value.status, info.value.param) == (status, param)
    error = orjson.loads(info.value.body())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status
    assert error["type"] == {400: "BadRequestError", 404: "NotFoundError"}[status]


@pytest.mark.parametrize(
    ("body", "model", "lora"),
    [({}, "base", None), ({"model": "base"}, "base", None), ({"model": "sql"}, "sql", "sql")],
)
def test_model_resolution(body: dict[str, Any], model: str, lora: str | None) -> None:
    parsed = parse_request(Endpoint.CHAT, {**body, "messages": MESSAGES}, SERVED)
    assert (parsed.model, parsed.lora) == (model, lora)


def test_generation_fields() -> None:
    parsed = parse_request(Endpoint.CHAT, {
        "messages": MESSAGES, "max_tokens": 9, "max_completion_tokens": 7, "n": 2,
        "stream": True, "stream_options": {"include_usage": True}}, SERVED)
    assert (parsed.max_tokens, parsed.n, parsed.stream, parsed.include_usage) == (7, 2, True, True)
    completion = parse_request(Endpoint.COMPLETION, {"prompt": ["abcd", [1, 2]]}, SERVED)
    assert completion.prompt_tokens == 3
    assert completion.max_tokens is None


def test_embedding_may_fill_the_context() -> None:
    parsed = parse_request(Endpoint.EMBEDDING, {"input": "x" * 256}, SERVED)
    assert parsed.prompt_tokens == 64


def test_chunks_are_valid_sse_json() -> None:
    parsed = parse_request(Endpoint.CHAT, {"model": "sql", "messages": MESSAGES,
                                           "stream": True}, SERVED)
    templates = ChunkTemplates(parsed, "chatcmpl-1", 123)
    role = orjson.loads(templates.role(0).removeprefix(b"data: ").removesuffix(b"\n\n"))
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    token = templates.token(1, WORD_JSON[0], "stop")
    assert token.startswith(b"data: ")
    assert token.endswith(b"\n\n")
    chunk = orjson.loads(token[6:-2])
    assert chunk["object"] == "chat.completion.chunk"
    assert chunk["model"] == "sql"
    assert chunk["choices"][0] == {"index": 1, "delta": {"content": " the"}, "logprobs": None,
                                   "finish_reason": "stop", "stop_reason": None}
    usage = orjson.loads(templates.usage(parsed, 123, 5)[6:-2])
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 5

    completion = parse_request(Endpoint.COMPLETION, {"prompt": "x", "stream": True}, SERVED)
    text_chunk = orjson.loads(ChunkTemplates(completion, "cmpl-1", 1).token(0, WORD_JSON[1], None)
                              [6:-2])
    assert text_chunk["object"] == "text_completion"
    assert text_chunk["choices"][0]["text"] == " model"


def test_models_list_has_base_and_adapters() -> None:
    data = orjson.loads(models_body(SERVED, 1))["data"]
    assert [(m["id"], m["parent"]) for m in data] == [("base", None), ("sql", "base"),
                                                      ("chat", "base")]
    assert data[0]["max_model_len"] == 64


def test_embedding_is_a_deterministic_unit_vector() -> None:
    vector = embedding_vector(Prompt.from_text("hello"), 16)
    assert vector == embedding_vector(Prompt.from_text("hello"), 16)
    assert vector != embedding_vector(Prompt.from_text("hellp"), 16)
    assert sum(x * x for x in vector) == pytest.approx(1.0)

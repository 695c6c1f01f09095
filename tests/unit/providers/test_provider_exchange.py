"""One attempt's request in the backend's dialect (paths, headers, bodies) and its answer back in
the client's (bodies, errors, streams), for pools and each provider type."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from inferlane.errors import BadRequest, UpstreamProtocolError
from inferlane.providers.exchange import (
    ClientApi,
    Exchange,
    Translation,
    pool_exchange,
    provider_exchange,
)
from inferlane.providers.runtime import ProviderRuntime, Secret
from inferlane.providers.sse import SseEventParser
from inferlane.providers.translate import DONE

KEY = "sk-test-0123456789"
CHAT, COMPLETIONS, EMBEDDINGS, MESSAGES = (ClientApi.CHAT, ClientApi.COMPLETIONS,
                                           ClientApi.EMBEDDINGS, ClientApi.MESSAGES)


def runtime(type_: str = "openai", **overrides: Any) -> ProviderRuntime:
    values: dict[str, Any] = {"key": "default/p", "type": type_, "host": "api.example.com",
                              "port": 443, "base_path": "/v1", "tls": None,
                              "credential": Secret(KEY)}
    values.update(overrides)
    return ProviderRuntime(**values)


def chat_request(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-x", "messages": [{"role": "user", "content": "Hi"}], **extra}


def messages_request(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 64,
            "messages": [{"role": "user", "content": "Hi"}], **extra}


def encode(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document)


def exchange(provider: ProviderRuntime, api: ClientApi, document: dict[str, Any]) -> Exchange:
    return provider_exchange(provider, api, document, encode(document))


# -- client API --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("api", "dialect", "suffix"),
    [(CHAT, "openai", "/chat/completions"), (COMPLETIONS, "openai", "/completions"),
     (EMBEDDINGS, "openai", "/embeddings"), (MESSAGES, "anthropic", "/chat/completions")],
)
def test_client_api(api: ClientApi, dialect: str, suffix: str) -> None:
    assert api.dialect == dialect
    assert api.openai_suffix == suffix
    assert ClientApi(api.value) is api


# -- pools -------------------------------------------------------------------------------------

def test_pool_relays_openai_requests_as_they_are() -> None:
    document = chat_request(temperature=0.2)
    body = encode(document)
    sent = pool_exchange(CHAT, document, body, "gpt-x", "/v1/chat/completions", rewritten=False)
    assert sent == Exchange("/v1/chat/completions", body, (), None)
    assert sent.body is body


@pytest.mark.parametrize("api", [CHAT, COMPLETIONS, EMBEDDINGS])
def test_pool_rewritten_model_replaces_only_the_model(api: ClientApi) -> None:
    document = {"model": "m-canary", "input": "x", "extra": {"a": [1, 2]}}
    sent = pool_exchange(api, document, encode(document), "m-lora", "/custom/path",
                         rewritten=True)
    assert sent.path == "/custom/path"
    assert orjson.loads(sent.body) == {**document, "model": "m-lora"}
    assert sent.translation is None
    assert sent.headers == ()


def test_pool_translates_anthropic_clients_to_chat_completions() -> None:
    document = messages_request(system="Be brief.", stream=True)
    sent = pool_exchange(MESSAGES, document, encode(document), "llama-3", "/v1/messages",
                         rewritten=False)
    assert sent.path == "/v1/chat/completions"
    assert orjson.loads(sent.body) == {
        "model": "llama-3", "max_tokens": 64, "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Hi"}]}
    assert isinstance(sent.translation, Translation)


# -- providers: paths, headers, bodies -----------------------------------------------------------

EXCHANGES = [
    # (id, provider, api, expected path, expected headers)
    ("openai-chat", runtime("openai"), CHAT, "/v1/chat/completions",
     (("authorization", f"Bearer {KEY}"),)),
    ("openai-completions", runtime("openai"), COMPLETIONS, "/v1/completions",
     (("authorization", f"Bearer {KEY}"),)),
    ("openai-embeddings", runtime("openai"), EMBEDDINGS, "/v1/embeddings",
     (("authorization", f"Bearer {KEY}"),)),
    ("compatible-with-key", runtime("openai-compatible", base_path=""), CHAT,
     "/chat/completions", (("authorization", f"Bearer {KEY}"),)),
    ("compatible-without-key", runtime("openai-compatible", credential=None), CHAT,
     "/v1/chat/completions", ()),
    ("extra-headers-first", runtime("openai-compatible", credential=None,
                                    headers=(("x-team", "a"), ("x-trace", "b"))),
     CHAT, "/v1/chat/completions", (("x-team", "a"), ("x-trace", "b"))),
    ("openai-headers-then-key", runtime("openai", headers=(("openai-organization", "org"),)),
     CHAT, "/v1/chat/completions",
     (("openai-organization", "org"), ("authorization", f"Bearer {KEY}"))),
    ("azure-deployment", runtime("azure-openai", base_path="", azure_deployment="prod-4o",
                                 azure_api_version="2024-10-21"), CHAT,
     "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
     (("api-key", KEY),)),
    ("azure-model-as-deployment", runtime("azure-openai", base_path="",
                                          azure_api_version="2024-10-21"), EMBEDDINGS,
     "/openai/deployments/gpt-x/embeddings?api-version=2024-10-21", (("api-key", KEY),)),
    ("azure-override-as-deployment", runtime("azure-openai", base_path="/base",
                                             azure_api_version="v1",
                                             model_name_override="o-dep"), COMPLETIONS,
     "/base/openai/deployments/o-dep/completions?api-version=v1", (("api-key", KEY),)),
    ("azure-without-key", runtime("azure-openai", base_path="", credential=None,
                                  azure_api_version="v1"), CHAT,
     "/openai/deployments/gpt-x/chat/completions?api-version=v1", ()),
    ("anthropic-chat", runtime("anthropic", base_path=""), CHAT, "/v1/messages",
     (("anthropic-version", "2023-06-01"), ("x-api-key", KEY))),
    ("anthropic-version-and-base", runtime("anthropic", base_path="/proxy",
                                           anthropic_version="2026-10-21",
                                           headers=(("anthropic-beta", "x"),)), CHAT,
     "/proxy/v1/messages",
     (("anthropic-beta", "x"), ("anthropic-version", "2026-10-21"), ("x-api-key", KEY))),
    ("anthropic-without-key", runtime("anthropic", base_path="", credential=None), CHAT,
     "/v1/messages", (("anthropic-version", "2023-06-01"),)),
]


@pytest.mark.parametrize(("provider", "api", "path", "headers"),
                         [pytest.param(*case[1:], id=case[0]) for case in EXCHANGES])
def test_provider_path_and_headers(provider: ProviderRuntime, api: ClientApi, path: str,
                                   headers: tuple[tuple[str, str], ...]) -> None:
    document = chat_request() if api is CHAT else {"model": "gpt-x", "input": "hello"}
    sent = exchange(provider, api, document)
    assert sent.path == path
    assert sent.headers == headers


@pytest.mark.parametrize("api", [CHAT, COMPLETIONS, EMBEDDINGS])
@pytest.mark.parametrize("type_", ["openai", "openai-compatible", "azure-openai"])
def test_openai_style_providers_relay_openai_requests(type_: str, api: ClientApi) -> None:
    document = {"model": "gpt-x", "prompt": "Hi", "stream": True, "seed": 1}
    body = encode(document)
    sent = provider_exchange(runtime(type_, azure_api_version="v1"), api, document, body)
    assert sent.translation is None
    assert sent.body is body  # the model is unchanged: the client's bytes go as they are


@pytest.mark.parametrize(
    ("type_", "api"),
    [("openai", CHAT), ("azure-openai", EMBEDDINGS), ("openai-compatible", COMPLETIONS),
     ("anthropic", MESSAGES)],
)
def test_model_name_override_replaces_the_model(type_: str, api: ClientApi) -> None:
    document = {"model": "client-model", "max_tokens": 8, "stream": False,
                "messages": [{"role": "user", "content": "Hi"}]}
    sent = exchange(runtime(type_, model_name_override="real-model", azure_api_version="v1"),
                    api, document)
    assert orjson.loads(sent.body) == {**document, "model": "real-model"}
    assert sent.translation is None


def test_a_request_without_model_gets_the_override() -> None:
    document = {"messages": [{"role": "user", "content": "Hi"}]}
    sent = exchange(runtime("openai", model_name_override="gpt-4o"), CHAT, document)
    assert orjson.loads(sent.body)["model"] == "gpt-4o"


def test_anthropic_messages_clients_are_relayed_to_anthropic() -> None:
    document = messages_request(top_k=5, thinking={"type": "enabled", "budget_tokens": 10})
    body = encode(document)
    sent = provider_exchange(runtime("anthropic", base_path=""), MESSAGES, document, body)
    assert (sent.path, sent.body, sent.translation) == ("/v1/messages", body, None)


@pytest.mark.parametrize("api", [COMPLETIONS, EMBEDDINGS])
def test_anthropic_provider_refuses_completions_and_embeddings(api: ClientApi) -> None:
    with pytest.raises(BadRequest) as caught:
        exchange(runtime("anthropic", key="team/claude"), api, {"model": "x", "input": "hi"})
    assert caught.value.status == 400
    assert api.value in caught.value.message
    assert "team/claude" in caught.value.message
    assert "/v1/chat/completions or /v1/messages" in caught.value.message


def test_openai_chat_to_anthropic_request_shape() -> None:
    document = chat_request(
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Weather in Paris?"}],
        temperature=0.5, stop="END", stream=True, stream_options={"include_usage": True},
        tools=[{"type": "function", "function": {
            "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}])
    provider = runtime("anthropic", base_path="", model_name_override="claude-sonnet",
                       anthropic_max_tokens=1234)
    sent = exchange(provider, CHAT, document)
    assert orjson.loads(sent.body) == {
        "model": "claude-sonnet", "max_tokens": 1234, "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text",
                                                   "text": "Weather in Paris?"}]}],
        "stop_sequences": ["END"], "temperature": 0.5, "stream": True,
        "tools": [{"name": "get_weather",
                   "input_schema": {"type": "object", "properties": {}}}]}
    assert isinstance(sent.translation, Translation)


@pytest.mark.parametrize(("version", "allowed"), [("2023-06-01", True), ("2026-10-20", True),
                                                  ("2026-10-21", False), ("2027-02-01", False)])
def test_sampling_parameters_by_anthropic_version(version: str, allowed: bool) -> None:
    provider = runtime("anthropic", anthropic_version=version)
    assert provider.sampling_parameters is allowed
    document = chat_request(top_p=0.9)
    if allowed:
        assert orjson.loads(exchange(provider, CHAT, document).body)["top_p"] == 0.9
    else:
        with pytest.raises(BadRequest, match="top_p"):
            exchange(provider, CHAT, document)


@pytest.mark.parametrize(
    ("provider", "path"),
    [(runtime("openai"), "/v1/chat/completions"),
     (runtime("openai-compatible", credential=None, base_path=""), "/chat/completions"),
     (runtime("azure-openai", base_path="", azure_api_version="v1"),
      "/openai/deployments/served-model/chat/completions?api-version=v1")],
)
def test_anthropic_client_to_openai_style_provider(provider: ProviderRuntime,
                                                   path: str) -> None:
    provider = ProviderRuntime(**{**_fields(provider), "model_name_override": "served-model"})
    document = messages_request(stop_sequences=["\n\n"], metadata={"user_id": "u1"})
    sent = exchange(provider, MESSAGES, document)
    assert sent.path == path
    assert orjson.loads(sent.body) == {
        "model": "served-model", "max_tokens": 64, "stop": ["\n\n"], "user": "u1",
        "messages": [{"role": "user", "content": "Hi"}]}
    assert isinstance(sent.translation, Translation)


def _fields(provider: ProviderRuntime) -> dict[str, Any]:
    return {name: getattr(provider, name) for name in ProviderRuntime.__dataclass_fields__}


def test_translation_errors_are_400s_naming_the_field() -> None:
    with pytest.raises(BadRequest) as caught:
        exchange(runtime("anthropic"), CHAT, chat_request(logprobs=True))
    assert caught.value.param == "logprobs"
    with pytest.raises(BadRequest) as caught:
        exchange(runtime("openai"), MESSAGES, messages_request(top_k=3))
    assert caught.value.param == "top_k"


@pytest.mark.parametrize("model", ["../../admin?x=", "gpt 4o", "a/b#frag"])
def test_azure_deployment_from_the_model_cannot_change_the_url(model: str) -> None:
    provider = runtime("azure-openai", base_path="", azure_api_version="2024-10-21")
    try:
        sent = exchange(provider, CHAT, chat_request(model=model))
    except BadRequest:
        return  # refusing such a model name is fine too
    parts = urlsplit(sent.path)
    segments = parts.path.split("/")
    assert segments[:3] == ["", "openai", "deployments"]
    assert segments[4:] == ["chat", "completions"]
    assert " " not in sent.path
    assert "#" not in sent.path
    assert parse_qsl(parts.query) == [("api-version", "2024-10-21")]


# -- Translation: bodies -----------------------------------------------------------------------

ANTHROPIC_MESSAGE = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet",
    "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                 "input": {"city": "Paris"}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 10, "cache_read_input_tokens": 5,
              "cache_creation_input_tokens": 0, "output_tokens": 7},
}

CHAT_COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "llama-3",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Checking.",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
    "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
}


def to_openai(**document: Any) -> Translation:
    """An OpenAI chat client served by an Anthropic provider."""
    return Translation(CHAT, "anthropic", chat_request(**document), request_model="claude")


def to_anthropic(**document: Any) -> Translation:
    """An Anthropic messages client served by an OpenAI-style backend."""
    return Translation(MESSAGES, "openai", messages_request(**document), request_model="llama")


def test_body_anthropic_message_to_openai_chat() -> None:
    translation = to_openai()
    assert not translation.usage_seen
    chat = orjson.loads(translation.body(encode(ANTHROPIC_MESSAGE)))
    assert chat["object"] == "chat.completion"
    assert chat["id"].startswith("chatcmpl-")
    assert chat["model"] == "gpt-x"  # the client's name, not the provider's
    (choice,) = chat["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    assert choice["message"]["tool_calls"] == [{"id": "toolu_01", "type": "function", "function": {
        "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]
    assert chat["usage"]["prompt_tokens"] == 15  # cache reads count as prompt tokens
    assert (translation.prompt_tokens, translation.completion_tokens) == (15, 7)
    assert translation.usage_seen


def test_body_openai_chat_to_anthropic_message() -> None:
    translation = to_anthropic()
    message = orjson.loads(translation.body(encode(CHAT_COMPLETION)))
    assert message["type"] == "message"
    assert message["id"].startswith("msg_")
    assert message["model"] == "claude-x"
    assert message["content"] == [{"type": "text", "text": "Checking."},
                                  {"type": "tool_use", "id": "call_1", "name": "get_weather",
                                   "input": {"city": "Paris"}}]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["input_tokens"] == 30
    assert message["usage"]["output_tokens"] == 12
    assert (translation.prompt_tokens, translation.completion_tokens) == (30, 12)
    assert translation.usage_seen


def test_the_model_falls_back_to_the_request_model() -> None:
    translation = Translation(CHAT, "anthropic", {"messages": []}, request_model="claude")
    chat = orjson.loads(translation.body(encode(ANTHROPIC_MESSAGE)))
    assert chat["model"] == "claude"


def test_prompt_tokens_include_cached_tokens_in_both_directions() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105,
             "prompt_tokens_details": {"cached_tokens": 40}}
    body = to_anthropic()
    body.body(encode({**CHAT_COMPLETION, "usage": usage}))
    stream = to_anthropic(stream=True)
    stream.stream(b"data: " + encode({"choices": [], "usage": usage}) + b"\n\n")
    assert stream.prompt_tokens == 100
    assert body.prompt_tokens == stream.prompt_tokens


@pytest.mark.parametrize(
    ("translation", "answer"),
    [(to_openai(), {k: v for k, v in ANTHROPIC_MESSAGE.items() if k != "usage"}),
     (to_anthropic(), {k: v for k, v in CHAT_COMPLETION.items() if k != "usage"})],
    ids=["anthropic-provider", "openai-backend"],
)
def test_body_without_usage_is_not_usage_seen(translation: Translation,
                                              answer: dict[str, Any]) -> None:
    translation.body(encode(answer))
    assert not translation.usage_seen


@pytest.mark.parametrize("translation", [to_openai(), to_anthropic()], ids=["openai", "anthropic"])
@pytest.mark.parametrize("payload", [b"", b"<html>502</html>", b"{\"truncated\": "])
def test_body_that_is_not_json_is_an_upstream_protocol_error(translation: Translation,
                                                             payload: bytes) -> None:
    with pytest.raises(UpstreamProtocolError, match="not JSON"):
        translation.body(payload)


@pytest.mark.parametrize(
    ("translation", "payload"),
    [(to_openai(), {"type": "message", "content": "no blocks"}),
     (to_anthropic(), {"object": "chat.completion", "choices": []})],
    ids=["anthropic-without-content", "openai-without-choices"],
)
def test_body_of_the_wrong_shape_is_an_upstream_protocol_error(translation: Translation,
                                                               payload: dict[str, Any]) -> None:
    with pytest.raises(UpstreamProtocolError):
        translation.body(encode(payload))


# -- Translation: errors -----------------------------------------------------------------------

ANTHROPIC_ERROR = encode({"type": "error", "error": {"type": "overloaded_error",
                                                     "message": "Overloaded"}})
OPENAI_ERROR = encode({"error": {"message": "This model's maximum context length is 8192",
                                 "type": "invalid_request_error", "param": "messages",
                                 "code": "context_length_exceeded"}})


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (529, ANTHROPIC_ERROR, {"message": "Overloaded", "type": "upstream_error"}),
        (500, ANTHROPIC_ERROR, {"message": "Overloaded", "type": "upstream_error"}),
        (400, encode({"type": "error", "error": {"type": "invalid_request_error",
                                                 "message": "prompt is too long"}}),
         {"message": "prompt is too long", "type": "invalid_request_error"}),
        (429, encode({"type": "error", "error": {"type": "rate_limit_error",
                                                 "message": "slow down"}}),
         {"message": "slow down", "type": "invalid_request_error"}),
        (502, b"<html>bad gateway</html>",
         {"message": "The backend answered HTTP 502.", "type": "upstream_error"}),
        (503, b"", {"message": "The backend answered HTTP 503.", "type": "upstream_error"}),
        (500, encode(["not", "an", "object"]),
         {"message": "The backend answered HTTP 500.", "type": "upstream_error"}),
        (500, encode({"error": {"message": 42}}),
         {"message": "The backend answered HTTP 500.", "type": "upstream_error"}),
    ],
)
def test_error_for_openai_clients(status: int, payload: bytes,
                                  expected: dict[str, str]) -> None:
    body = orjson.loads(to_openai().error(status, payload))
    assert body == {"error": {**expected, "param": None, "code": None}}


@pytest.mark.parametrize(
    ("status", "payload", "kind", "message"),
    [
        (400, OPENAI_ERROR, "invalid_request_error",
         "This model's maximum context length is 8192"),
        (401, encode({"error": {"message": "bad key"}}), "authentication_error", "bad key"),
        (403, encode({"error": {"message": "no"}}), "permission_error", "no"),
        (404, encode({"error": {"message": "no model"}}), "not_found_error", "no model"),
        (413, b"too big", "request_too_large", "The backend answered HTTP 413."),
        (429, encode({"error": {"message": "slow"}}), "rate_limit_error", "slow"),
        (500, encode({"error": {"message": "boom"}}), "api_error", "boom"),
        (503, b"", "overloaded_error", "The backend answered HTTP 503."),
        (529, ANTHROPIC_ERROR, "overloaded_error", "Overloaded"),
        (418, encode({"error": {"message": "teapot"}}), "api_error", "teapot"),
    ],
)
def test_error_for_anthropic_clients(status: int, payload: bytes, kind: str,
                                     message: str) -> None:
    body = orjson.loads(to_anthropic().error(status, payload))
    assert body == {"type": "error", "error": {"type": kind, "message": message}}


def test_error_message_is_bounded() -> None:
    body = orjson.loads(to_openai().error(500, encode({"error": {"message": "x" * 10_000}})))
    assert body["error"]["message"] == "x" * 2000


@pytest.mark.parametrize(
    "payload",
    [{"object": "error", "message": "maximum context length is 4096 tokens",
      "type": "BadRequestError", "param": None, "code": 400},
     {"error": "maximum context length is 4096 tokens", "error_type": "validation"}],
    ids=["sglang", "tgi-ollama"],
)
def test_error_message_of_openai_compatible_servers_is_kept(payload: dict[str, Any]) -> None:
    body = orjson.loads(to_anthropic().error(400, encode(payload)))
    assert body["error"]["message"] == "maximum context length is 4096 tokens"


# -- Translation: Anthropic stream → OpenAI chunks -----------------------------------------------

def sse(event: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps(data, ensure_ascii=False).encode()
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


ANTHROPIC_STREAM = b"".join([
    sse("message_start", {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 20, "cache_read_input_tokens": 5, "output_tokens": 1}}}),
    sse("content_block_start", {"type": "content_block_start", "index": 0,
                                "content_block": {"type": "text", "text": ""}}),
    sse("ping", {"type": "ping"}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": "Let me check "}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": "the météo."}}),
    sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    sse("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 1,
                                "delta": {"type": "input_json_delta", "partial_json": ""}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
        "type": "input_json_delta", "partial_json": "{\"city\": \"Par"}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
        "type": "input_json_delta", "partial_json": "is\", \"unit\": \"°C\"}"}}),
    sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
    sse("message_delta", {"type": "message_delta",
                          "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                          "usage": {"output_tokens": 42}}),
    sse("message_stop", {"type": "message_stop"}),
])


def frames(output: bytes) -> list[str]:
    """The data fields of SSE output, in order."""
    return [data for _, data in SseEventParser().feed(output)]


def chunks(output: bytes) -> list[dict[str, Any]]:
    assert output.endswith(DONE)
    assert output.count(DONE) == 1
    data = frames(output)
    assert data[-1] == "[DONE]"
    return [orjson.loads(d) for d in data[:-1]]


def feed_in_pieces(translation: Translation, stream: bytes, cuts: list[int]) -> bytes:
    out = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        out.append(translation.stream(stream[previous:cut]))
        previous = cut
    return b"".join(out)


def without_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k not in ("id", "created")} for item in items]


def test_anthropic_stream_to_openai_chunks() -> None:
    translation = to_openai(stream=True)
    output = translation.stream(ANTHROPIC_STREAM)
    got = chunks(output)
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-x" for c in got)
    assert len({c["id"] for c in got}) == 1
    assert all("usage" not in c for c in got)  # only with stream_options.include_usage
    deltas = [c["choices"][0]["delta"] for c in got]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Let me check the météo."
    calls = [call for d in deltas for call in d.get("tool_calls", ())]
    assert calls[0] == {"index": 0, "id": "toolu_01", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert json.loads(arguments) == {"city": "Paris", "unit": "°C"}
    assert [c["choices"][0]["finish_reason"] for c in got][-1] == "tool_calls"
    assert (translation.prompt_tokens, translation.completion_tokens) == (25, 42)
    assert translation.usage_seen
    assert translation.finish() == b""  # message_stop was seen


def test_anthropic_stream_with_include_usage_ends_with_a_usage_chunk() -> None:
    translation = to_openai(stream=True, stream_options={"include_usage": True})
    got = chunks(translation.stream(ANTHROPIC_STREAM))
    *body, last = got
    assert all(c["usage"] is None for c in body)
    assert last["choices"] == []
    assert last["usage"]["prompt_tokens"] == 25
    assert last["usage"]["completion_tokens"] == 42
    assert last["usage"]["total_tokens"] == 67


@pytest.mark.parametrize("options", [{"include_usage": False}, {"include_usage": "yes"}, None,
                                     "include_usage"])
def test_usage_chunk_only_for_include_usage_true(options: Any) -> None:
    got = chunks(to_openai(stream=True, stream_options=options).stream(ANTHROPIC_STREAM))
    assert all(c["choices"] for c in got)


def split_points() -> list[list[int]]:
    size = len(ANTHROPIC_STREAM)
    newlines = [i for i in range(size) if ANTHROPIC_STREAM[i:i + 1] == b"\n"]
    degree = ANTHROPIC_STREAM.index("°".encode()) + 1  # inside the two-byte UTF-8 sequence
    return [list(range(1, size)), [degree], newlines, [i + 1 for i in newlines],
            list(range(7, size, 7)), list(range(64, size, 64))]


def test_anthropic_stream_cut_anywhere_gives_the_same_chunks() -> None:
    reference = without_ids(chunks(to_openai(stream=True).stream(ANTHROPIC_STREAM)))
    for cuts in split_points():
        translation = to_openai(stream=True)
        assert without_ids(chunks(feed_in_pieces(translation, ANTHROPIC_STREAM, cuts))) \
            == reference
        assert (translation.prompt_tokens, translation.completion_tokens) == (25, 42)


def test_anthropic_stream_cut_in_two_at_every_byte() -> None:
    reference = without_ids(chunks(to_openai(stream=True).stream(ANTHROPIC_STREAM)))
    for cut in range(1, len(ANTHROPIC_STREAM)):
        output = feed_in_pieces(to_openai(stream=True), ANTHROPIC_STREAM, [cut])
        assert without_ids(chunks(output)) == reference, cut


def test_anthropic_stream_error_event_becomes_an_openai_error_frame() -> None:
    translation = to_openai(stream=True)
    head = ANTHROPIC_STREAM.split(b"event: content_block_stop")[0]
    output = translation.stream(head + sse("error", {"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}}))
    *_, error = [orjson.loads(d) for d in frames(output)]
    assert error == {"error": {"message": "Overloaded", "type": "overloaded_error",
                               "param": None, "code": None}}
    assert DONE not in output


def test_anthropic_stream_that_ends_early_gets_an_error_frame() -> None:
    translation = to_openai(stream=True)
    head = ANTHROPIC_STREAM.split(b"event: message_delta")[0]
    output = translation.stream(head)
    assert DONE not in output
    closing = translation.finish()
    assert [orjson.loads(d) for d in frames(closing)] == [{"error": {
        "message": "The provider broke off the stream (the provider ended the stream without "
                   "message_stop).", "type": "upstream_error", "param": None,
        "code": "upstream_stream_interrupted"}}]


def test_broken_for_openai_clients() -> None:
    (frame,) = frames(to_openai(stream=True).broken("connection reset"))
    assert orjson.loads(frame)["error"]["message"] == ("The provider broke off the stream "
                                                       "(connection reset).")


def test_anthropic_stream_non_json_data_is_skipped() -> None:
    translation = to_openai(stream=True)
    assert translation.stream(b"event: ping\ndata: not json\n\ndata: [1, 2]\n\n") == b""
    assert chunks(translation.stream(ANTHROPIC_STREAM))


def test_message_delta_with_input_tokens_replaces_the_prompt_count() -> None:
    translation = to_openai(stream=True)
    stream = ANTHROPIC_STREAM.replace(b'"usage": {"output_tokens": 42}',
                                      b'"usage": {"input_tokens": 30, "output_tokens": 42}')
    translation.stream(stream)
    assert (translation.prompt_tokens, translation.completion_tokens) == (30, 42)


def test_done_is_sent_once_even_if_events_follow_message_stop() -> None:
    translation = to_openai(stream=True)
    output = translation.stream(ANTHROPIC_STREAM + sse("ping", {"type": "ping"}))
    assert output.count(DONE) == 1


# -- Translation: OpenAI chunks → Anthropic events -----------------------------------------------

def chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
          **extra: Any) -> bytes:
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk",
                            "created": 1, "model": "llama-3"}
    body["choices"] = [] if delta is None else [{"index": 0, "delta": delta,
                                                 "finish_reason": finish}]
    body.update(extra)
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


OPENAI_STREAM = b"".join([
    chunk({"role": "assistant", "content": ""}, usage=None),
    chunk({"content": "Hel"}, usage=None),
    chunk({"content": "lo"}, usage=None),
    b": keep-alive comment\n\n",
    chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                           "function": {"name": "get_weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
    chunk({}, "tool_calls"),
    chunk(usage={"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}),
    b"data: [DONE]\n\n",
])


def events(output: bytes) -> list[tuple[str, dict[str, Any]]]:
    return [(name, orjson.loads(data)) for name, data in SseEventParser().feed(output)]


def test_openai_chunks_to_anthropic_events() -> None:
    translation = to_anthropic(stream=True)
    got = events(translation.stream(OPENAI_STREAM))
    assert [name for name, _ in got] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in got)
    start = got[0][1]["message"]
    assert start["model"] == "claude-x"
    assert start["id"].startswith("msg_")
    assert got[1][1] == {"type": "content_block_start", "index": 0,
                         "content_block": {"type": "text", "text": ""}}
    assert "".join(d["delta"].get("text", "") for n, d in got if n == "content_block_delta") \
        == "Hello"
    assert got[5][1]["content_block"] == {"type": "tool_use", "id": "call_1",
                                          "name": "get_weather", "input": {}}
    partial = "".join(d["delta"].get("partial_json", "") for n, d in got
                      if n == "content_block_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert got[9][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert got[9][1]["usage"]["input_tokens"] == 30
    assert got[9][1]["usage"]["output_tokens"] == 12
    assert (translation.prompt_tokens, translation.completion_tokens) == (30, 12)
    assert translation.finish() == b""


def test_openai_stream_cut_at_every_byte_gives_the_same_events() -> None:
    def without_message_id(output: bytes) -> list[tuple[str, dict[str, Any]]]:
        got = events(output)
        for name, data in got:
            if name == "message_start":
                data["message"].pop("id")
        return got

    reference = without_message_id(to_anthropic(stream=True).stream(OPENAI_STREAM))
    for cuts in ([*range(1, len(OPENAI_STREAM))], [5], [len(OPENAI_STREAM) - 3]):
        output = feed_in_pieces(to_anthropic(stream=True), OPENAI_STREAM, cuts)
        assert without_message_id(output) == reference


@pytest.mark.parametrize(
    ("usage", "counts"),
    [({"prompt_tokens": 7}, (7, 0)), ({"completion_tokens": 3}, (0, 3)),
     ({"prompt_tokens": "7", "completion_tokens": None}, (0, 0))],
)
def test_stream_usage_takes_only_integer_counts(usage: dict[str, Any],
                                                counts: tuple[int, int]) -> None:
    translation = to_anthropic(stream=True)
    translation.stream(chunk(usage=usage))
    assert (translation.prompt_tokens, translation.completion_tokens) == counts
    assert translation.usage_seen


def test_openai_stream_without_usage_chunk_closes_at_done() -> None:
    stream = OPENAI_STREAM.replace(chunk(usage={"prompt_tokens": 30, "completion_tokens": 12,
                                                "total_tokens": 42}), b"")
    translation = to_anthropic(stream=True)
    got = events(translation.stream(stream))
    assert [name for name, _ in got][-2:] == ["message_delta", "message_stop"]
    assert got[-2][1]["usage"]["output_tokens"] == 0
    assert not translation.usage_seen
    assert translation.finish() == b""


def test_openai_stream_that_ends_without_done_is_closed_by_finish() -> None:
    translation = to_anthropic(stream=True)
    output = translation.stream(chunk({"content": "Hi"}))
    assert [name for name, _ in events(output)] == ["message_start", "content_block_start",
                                                    "content_block_delta"]
    closing = events(translation.finish())
    assert [name for name, _ in closing] == ["content_block_stop", "message_delta",
                                             "message_stop"]
    assert closing[1][1]["delta"]["stop_reason"] == "end_turn"
    assert translation.finish() == b""


def test_openai_stream_error_chunk_becomes_an_error_event() -> None:
    translation = to_anthropic(stream=True)
    output = translation.stream(chunk({"content": "Hi"})
                                + b"data: {\"error\": {\"message\": \"engine died\"}}\n\n")
    name, data = events(output)[-1]
    assert (name, data) == ("error", {"type": "error", "error": {"type": "api_error",
                                                                 "message": "engine died"}})
    assert translation.finish() == b""


def test_openai_stream_skips_data_that_is_not_an_object() -> None:
    translation = to_anthropic(stream=True)
    assert translation.stream(b"data: nonsense\n\ndata: 42\n\n") == b""


def test_broken_for_anthropic_clients_ends_the_stream() -> None:
    translation = to_anthropic(stream=True)
    translation.stream(chunk({"content": "Hi"}))
    ((name, data),) = events(translation.broken("read timeout"))
    assert (name, data) == ("error", {"type": "error", "error": {
        "type": "api_error", "message": "The backend broke off the stream (read timeout)."}})
    assert translation.finish() == b""  # nothing after the error event


def test_interleaved_parallel_tool_calls_are_an_upstream_protocol_error() -> None:
    translation = to_anthropic(stream=True)
    translation.stream(chunk({"tool_calls": [
        {"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]}))
    translation.stream(chunk({"tool_calls": [
        {"index": 1, "id": "b", "function": {"name": "g", "arguments": ""}}]}))
    with pytest.raises(UpstreamProtocolError, match="interleaved"):
        translation.stream(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}))

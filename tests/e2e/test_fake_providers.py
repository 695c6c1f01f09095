"""The fake hosted providers speak the real wire formats: proven with the official SDKs.

The ``openai`` SDK (OpenAI and Azure OpenAI clients) and the ``anthropic`` SDK talk to one
``fake_providers.py`` process: answers, streams (text and tool calls, accumulated by the SDKs'
own stream helpers), every scripted fault mapped to the exception class the SDK raises for the
real provider, authentication, and TLS with a private CA. ``max_retries=0`` everywhere, so each
scripted failure is seen as it was sent.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from . import provider_harness
from .provider_harness import FakeProvider, start_fake_provider

pytestmark = pytest.mark.e2e

fake_provider_factory = provider_harness.fake_provider_factory

KEY = "sk-fake-test-key-1234567890"
WRONG_KEY = "sk-wrong-key-must-not-be-echoed"
NAME = "acme"
GPT = "gpt-4o-mini"
DEPLOYMENT = "my-gpt-deployment"
CLAUDE = "claude-fake-model"  # not a real name: the SDK warns about deprecated ones
AZURE_API_VERSION = "2024-10-21"
PROMPT = "What is the weather like in Paris today?"
ANSWER = f"{NAME} answers: {PROMPT}"
TOOL_ARGUMENTS = {"city": "Paris", "unit": "celsius"}
OPENAI_QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
CLAUDE_QUESTION: list[MessageParam] = [{"role": "user", "content": PROMPT}]
OPENAI_TOOLS: list[ChatCompletionToolParam] = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string"}}}}}]
CLAUDE_TOOLS: list[anthropic.types.ToolParam] = [{
    "name": "get_weather", "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"},
                                                      "unit": {"type": "string"}}}}]
FLAVOURS = ("openai", "azure", "anthropic")


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeProvider]:
    with start_fake_provider(tmp_path_factory.mktemp("fake-providers"), name=NAME,
                             api_key=KEY) as started:
        yield started
    # Closed and hung connections included, the fake handled everything without a traceback.
    assert "Traceback" not in started.stderr(), started.describe()


@pytest.fixture(scope="module")
def tls_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeProvider]:
    with start_fake_provider(tmp_path_factory.mktemp("fake-providers-tls"), name=NAME,
                             api_key=KEY, tls=True) as started:
        yield started


@pytest.fixture(autouse=True)
def fresh(fake: FakeProvider) -> None:
    fake.clear()


def openai_client(fake: FakeProvider, **options: Any) -> openai.OpenAI:
    options = {"api_key": KEY, "max_retries": 0, "timeout": 10.0, **options}
    return openai.OpenAI(base_url=fake.openai_base_url, **options)


def azure_client(fake: FakeProvider, **options: Any) -> openai.AzureOpenAI:
    options = {"api_key": KEY, "max_retries": 0, "timeout": 10.0, **options}
    return openai.AzureOpenAI(azure_endpoint=fake.url, api_version=AZURE_API_VERSION, **options)


def anthropic_client(fake: FakeProvider, **options: Any) -> anthropic.Anthropic:
    options = {"api_key": KEY, "max_retries": 0, "timeout": 10.0, **options}
    return anthropic.Anthropic(base_url=fake.url, **options)


def ask(fake: FakeProvider, flavour: str, **options: Any) -> str:
    """One non-streamed question through ``flavour``'s SDK; the answer's text."""
    if flavour == "anthropic":
        with anthropic_client(fake, **options) as claude:
            message = claude.messages.create(model=CLAUDE, max_tokens=64,
                                             messages=CLAUDE_QUESTION)
        assert message.content[0].type == "text"
        return message.content[0].text
    make = azure_client if flavour == "azure" else openai_client
    with make(fake, **options) as client:
        completion = client.chat.completions.create(
            model=DEPLOYMENT if flavour == "azure" else GPT, messages=OPENAI_QUESTION)
    return completion.choices[0].message.content or ""


def sdk(flavour: str) -> ModuleType:
    return anthropic if flavour == "anthropic" else openai


# -- OpenAI ---------------------------------------------------------------------------------


def test_openai_answers_with_usage_and_records_the_request(fake: FakeProvider) -> None:
    with openai_client(fake) as client:
        completion = client.chat.completions.create(model=GPT, messages=OPENAI_QUESTION)
    assert completion.object == "chat.completion"
    assert completion.model == GPT
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == (ANSWER, "stop")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len(PROMPT.split())
    assert completion.usage.completion_tokens == len(ANSWER.split())
    [received] = fake.requests()
    assert received["path"] == "/v1/chat/completions"
    assert received["headers"]["authorization"] == f"Bearer {KEY}"
    assert received["body"]["messages"] == OPENAI_QUESTION


def test_openai_max_tokens_cuts_the_answer(fake: FakeProvider) -> None:
    with openai_client(fake) as client:
        completion = client.chat.completions.create(model=GPT, messages=OPENAI_QUESTION,
                                                    max_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == " ".join(ANSWER.split()[:3])
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


def test_openai_stream_text_with_and_without_usage(fake: FakeProvider) -> None:
    with openai_client(fake) as client:
        chunks = list(client.chat.completions.create(
            model=GPT, messages=OPENAI_QUESTION, stream=True,
            stream_options={"include_usage": True}))
        plain = list(client.chat.completions.create(model=GPT, messages=OPENAI_QUESTION,
                                                    stream=True))
    deltas = [c.choices[0].delta.content for c in chunks
              if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 3
    assert "".join(deltas) == ANSWER
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == len(deltas)
    assert all(c.choices and c.usage is None for c in plain)


def test_openai_tool_call_streams_in_fragments_the_sdk_reassembles(fake: FakeProvider) -> None:
    with openai_client(fake) as client:
        raw = list(client.chat.completions.create(model=GPT, messages=OPENAI_QUESTION,
                                                  tools=OPENAI_TOOLS, stream=True))
        with client.chat.completions.stream(model=GPT, messages=OPENAI_QUESTION,
                                            tools=OPENAI_TOOLS) as stream:
            final = stream.get_final_completion()
    first = raw[0].choices[0].delta.tool_calls
    assert first is not None
    assert first[0].function is not None
    assert (first[0].index, first[0].type, first[0].function.name) == (0, "function",
                                                                        "get_weather")
    assert first[0].id
    assert first[0].function.arguments == ""
    fragments = [call.function.arguments or "" for c in raw[1:]
                 for call in c.choices[0].delta.tool_calls or [] if call.function]
    assert len(fragments) >= 3
    assert json.loads("".join(fragments)) == TOOL_ARGUMENTS
    assert raw[-1].choices[0].finish_reason == "tool_calls"
    [call] = final.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather",
                                                                         TOOL_ARGUMENTS)
    assert final.choices[0].finish_reason == "tool_calls"


def test_openai_tool_call_unless_tool_choice_is_none(fake: FakeProvider) -> None:
    with openai_client(fake) as client:
        called = client.chat.completions.create(model=GPT, messages=OPENAI_QUESTION,
                                                tools=OPENAI_TOOLS)
        declined = client.chat.completions.create(model=GPT, messages=OPENAI_QUESTION,
                                                  tools=OPENAI_TOOLS, tool_choice="none")
    assert called.choices[0].finish_reason == "tool_calls"
    assert called.choices[0].message.content is None
    [call] = called.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert json.loads(call.function.arguments) == TOOL_ARGUMENTS
    assert (declined.choices[0].message.content, declined.choices[0].finish_reason) == (
        ANSWER, "stop")


# -- Azure OpenAI ---------------------------------------------------------------------------


def test_azure_answers_as_the_deployment(fake: FakeProvider) -> None:
    with azure_client(fake) as client:
        completion = client.chat.completions.create(model=DEPLOYMENT, messages=OPENAI_QUESTION)
        chunks = list(client.chat.completions.create(model=DEPLOYMENT, messages=OPENAI_QUESTION,
                                                     stream=True))
    assert (completion.model, completion.choices[0].message.content) == (DEPLOYMENT, ANSWER)
    assert chunks[0].choices == []  # Azure's prompt-filter chunk comes first
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert {c.model for c in chunks[1:]} == {DEPLOYMENT}
    received = fake.requests()[0]
    assert received["path"] == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert received["query"] == {"api-version": AZURE_API_VERSION}
    assert received["headers"]["api-key"] == KEY


def test_azure_without_api_version_is_not_found(fake: FakeProvider) -> None:
    reply = httpx2.post(f"{fake.url}/openai/deployments/{DEPLOYMENT}/chat/completions",
                        headers={"api-key": KEY}, json={"messages": OPENAI_QUESTION})
    assert reply.status_code == 404
    assert reply.json() == {"error": {"code": "404", "message": "Resource not found"}}


# -- Anthropic ------------------------------------------------------------------------------


def test_anthropic_answers_with_usage_and_records_the_request(fake: FakeProvider) -> None:
    with anthropic_client(fake) as claude:
        message = claude.messages.create(model=CLAUDE, max_tokens=256, messages=CLAUDE_QUESTION)
    assert message.id.startswith("msg_")
    assert (message.role, message.model, message.stop_reason) == ("assistant", CLAUDE,
                                                                   "end_turn")
    assert message.content[0].type == "text"
    assert message.content[0].text == ANSWER
    assert message.usage.input_tokens == len(PROMPT.split())
    assert message.usage.output_tokens == len(ANSWER.split())
    [received] = fake.requests()
    assert received["path"] == "/v1/messages"
    assert received["headers"]["authorization"] == f"Bearer {KEY}"  # how this SDK sends the key
    assert received["headers"]["anthropic-version"]


def test_anthropic_max_tokens_cuts_the_answer(fake: FakeProvider) -> None:
    with anthropic_client(fake) as claude:
        message = claude.messages.create(model=CLAUDE, max_tokens=2, messages=CLAUDE_QUESTION)
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text"
    assert message.content[0].text == " ".join(ANSWER.split()[:2])


def test_anthropic_stream_text(fake: FakeProvider) -> None:
    with anthropic_client(fake) as claude:
        events = [e.type for e in claude.messages.create(
            model=CLAUDE, max_tokens=256, messages=CLAUDE_QUESTION, stream=True)]
        with claude.messages.stream(model=CLAUDE, max_tokens=256,
                                    messages=CLAUDE_QUESTION) as stream:
            deltas = list(stream.text_stream)
            final = stream.get_final_message()
    assert events == ["message_start", "content_block_start",
                      *["content_block_delta"] * len(deltas), "content_block_stop",
                      "message_delta", "message_stop"]  # the SDK drops ``ping``
    assert len(deltas) > 3
    assert "".join(deltas) == ANSWER
    assert final.content[0].type == "text"
    assert final.content[0].text == ANSWER
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (len(PROMPT.split()),
                                                                     len(deltas))


def test_anthropic_tool_use_streams_json_fragments(fake: FakeProvider) -> None:
    with anthropic_client(fake) as claude:
        whole = claude.messages.create(model=CLAUDE, max_tokens=256, messages=CLAUDE_QUESTION,
                                       tools=CLAUDE_TOOLS)
        events = list(claude.messages.create(model=CLAUDE, max_tokens=256, stream=True,
                                             messages=CLAUDE_QUESTION, tools=CLAUDE_TOOLS))
        with claude.messages.stream(model=CLAUDE, max_tokens=256, messages=CLAUDE_QUESTION,
                                    tools=CLAUDE_TOOLS) as stream:
            final = stream.get_final_message()
    for message in (whole, final):
        assert message.stop_reason == "tool_use"
        [block] = message.content
        assert block.type == "tool_use"
        assert block.id.startswith("toolu_")
        assert (block.name, block.input) == ("get_weather", TOOL_ARGUMENTS)
    start = next(e for e in events if e.type == "content_block_start")
    assert start.content_block.type == "tool_use"
    assert start.content_block.input == {}
    fragments = [e.delta.partial_json for e in events
                 if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert len(fragments) >= 3
    assert json.loads("".join(fragments)) == TOOL_ARGUMENTS


def test_anthropic_takes_x_api_key_and_requires_the_version_header(fake: FakeProvider) -> None:
    request = {"model": CLAUDE, "max_tokens": 64, "messages": CLAUDE_QUESTION}
    unversioned = httpx2.post(f"{fake.url}/v1/messages", headers={"x-api-key": KEY}, json=request)
    assert unversioned.status_code == 400
    body = unversioned.json()
    assert body["type"] == "error"
    assert body["error"] == {"type": "invalid_request_error",
                             "message": "anthropic-version: header is required"}
    assert body["request_id"] == unversioned.headers["request-id"]
    versioned = httpx2.post(f"{fake.url}/v1/messages", json=request,
                            headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert versioned.status_code == 200
    assert versioned.json()["content"] == [{"type": "text", "text": ANSWER}]


# -- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_wrong_key_is_refused_without_echoing_it(fake: FakeProvider, flavour: str) -> None:
    with pytest.raises(sdk(flavour).AuthenticationError) as caught:
        ask(fake, flavour, api_key=WRONG_KEY)
    error = caught.value
    assert error.status_code == 401
    for secret in (KEY, WRONG_KEY):
        assert secret not in str(error)
        assert secret not in error.response.text
    if flavour == "openai":
        assert error.body["code"] == "invalid_api_key"
        assert error.body["type"] == "invalid_request_error"
    elif flavour == "anthropic":
        assert error.body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(("path", "expected"), [
    ("/v1/chat/completions", {"error": {
        "message": "You didn't provide an API key. You need to provide your API key in an "
                   "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                   "YOUR_KEY).", "type": "invalid_request_error", "param": None,
        "code": "invalid_api_key"}}),
    (f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={AZURE_API_VERSION}",
     {"error": {"code": "401", "message": "Access denied due to invalid subscription key or "
                "wrong API endpoint. Make sure to provide a valid key for an active subscription "
                "and use a correct regional API endpoint for your resource."}}),
    ("/v1/messages", {"type": "error", "error": {"type": "authentication_error",
                                                 "message": "x-api-key header is required"}}),
], ids=FLAVOURS)
def test_missing_key_is_refused(fake: FakeProvider, path: str, expected: dict[str, Any]) -> None:
    body = {"model": GPT, "max_tokens": 8, "messages": OPENAI_QUESTION}
    reply = httpx2.post(f"{fake.url}{path}", json=body,
                        headers={"anthropic-version": "2023-06-01"})
    assert reply.status_code == 401
    received = reply.json()
    received.pop("request_id", None)
    assert received == expected


# -- scripted faults ------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_rate_limit_carries_retry_after(fake: FakeProvider, flavour: str) -> None:
    fake.script({"status": 429, "retry_after": "2", "retry_after_ms": "2000"})
    with pytest.raises(sdk(flavour).RateLimitError) as caught:
        ask(fake, flavour)
    headers = caught.value.response.headers
    assert headers["retry-after"] == "2"
    assert headers.get("retry-after-ms") == (None if flavour == "anthropic" else "2000")
    assert ask(fake, flavour) == ANSWER  # one action per request, then the default


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("status", [500, 502, 503, 529])
def test_server_errors(fake: FakeProvider, flavour: str, status: int) -> None:
    fake.script({"status": status})
    with pytest.raises(sdk(flavour).InternalServerError) as caught:
        ask(fake, flavour)
    assert caught.value.status_code == status
    body = caught.value.body
    if flavour == "anthropic":
        assert body["type"] == "error"
        assert body["error"]["type"] == ("overloaded_error" if status == 529 else "api_error")
    else:
        assert body["type"] == "server_error"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_context_window_is_the_providers_bad_request(fake: FakeProvider, flavour: str) -> None:
    fake.script({"context_window": True})
    with pytest.raises(sdk(flavour).BadRequestError) as caught:
        ask(fake, flavour)
    body = caught.value.body
    if flavour == "anthropic":
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"].startswith("prompt is too long: ")
        assert body["error"]["message"].endswith(" tokens > 200000 maximum")
    else:
        assert (body["code"], body["param"]) == ("context_length_exceeded", "messages")
        assert body["message"].startswith("This model's maximum context length is 128000")


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
def test_close_without_response_is_a_connection_error(fake: FakeProvider, flavour: str) -> None:
    fake.script({"close": True})
    with pytest.raises(sdk(flavour).APIConnectionError):
        ask(fake, flavour)
    assert ask(fake, flavour) == ANSWER


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
def test_hang_never_answers(fake: FakeProvider, flavour: str) -> None:
    fake.script({"hang": True})
    with pytest.raises(sdk(flavour).APITimeoutError):
        ask(fake, flavour, timeout=0.5)
    assert ask(fake, flavour) == ANSWER


def test_delay_then_the_scripted_text(fake: FakeProvider) -> None:
    fake.script({"delay_ms": 300, "text": "scripted words here"})
    started = time.monotonic()
    assert ask(fake, "openai") == "scripted words here"
    assert time.monotonic() - started >= 0.3


def test_openai_stream_error_after_two_deltas(fake: FakeProvider) -> None:
    fake.script({"stream_error_after": 2})
    deltas: list[str] = []
    with openai_client(fake) as client:
        stream = client.chat.completions.create(model=GPT, messages=OPENAI_QUESTION, stream=True)
        with pytest.raises(openai.APIError) as caught:
            deltas.extend(chunk.choices[0].delta.content or "" for chunk in stream)
    assert "".join(deltas) == " ".join(ANSWER.split()[:2]) + " "
    assert caught.value.body == {"message": "The server had an error while processing your "
                                 "request. Sorry about that!", "type": "server_error",
                                 "param": None, "code": None}


def test_anthropic_stream_error_after_two_deltas(fake: FakeProvider) -> None:
    fake.script({"stream_error_after": 2})
    deltas: list[str] = []
    with anthropic_client(fake) as claude, claude.messages.stream(
            model=CLAUDE, max_tokens=256, messages=CLAUDE_QUESTION) as stream, pytest.raises(
            anthropic.APIStatusError) as caught:
        deltas.extend(stream.text_stream)
    assert caught.value.body == {"type": "error", "error": {"type": "overloaded_error",
                                                            "message": "Overloaded"}}
    assert "".join(deltas) == " ".join(ANSWER.split()[:2]) + " "


def test_script_is_fifo_and_validated(fake: FakeProvider) -> None:
    fake.script({"text": "first"}, {"text": "second"})
    assert [ask(fake, "openai"), ask(fake, "anthropic"), ask(fake, "azure")] == [
        "first", "second", ANSWER]
    with pytest.raises(AssertionError, match="unknown action keys"):
        fake.script({"explode": True})
    fake.script({"status": 503})
    fake.clear()
    assert ask(fake, "openai") == ANSWER
    assert [r["path"] for r in fake.requests()] == ["/v1/chat/completions"]


# -- TLS and the fixture --------------------------------------------------------------------


def test_tls_needs_the_fakes_ca(tls_fake: FakeProvider) -> None:
    assert tls_fake.url.startswith("https://")
    context = tls_fake.ssl_context()
    assert context is not None
    assert tls_fake.ca_file is not None
    for flavour in FLAVOURS:  # each SDK client closes its http_client
        trusting = httpx2.Client(verify=context)
        assert ask(tls_fake, flavour, http_client=trusting) == ANSWER
    with pytest.raises(openai.APIConnectionError) as caught:
        ask(tls_fake, "openai")
    cause: BaseException | None = caught.value
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    assert cause is not None, f"not a certificate failure: {caught.value!r}"


def test_factory_fake_without_key_accepts_any(
        fake_provider_factory: provider_harness.FakeProviderFactory) -> None:
    open_fake = fake_provider_factory(name="open")
    assert open_fake.api_key is None
    assert ask(open_fake, "anthropic", api_key="anything") == f"open answers: {PROMPT}"
    assert open_fake.returncode() is None

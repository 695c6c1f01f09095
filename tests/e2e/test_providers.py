"""Hosted providers behind the gateway, end to end: official SDKs → ``inferlane serve`` → fakes.

One stack for the module: three fake providers (``fake_providers.py``: Anthropic on HTTPS with a
private CA, OpenAI, Azure OpenAI), one ``inferlane sim`` replica, and one gateway started with
``--log-level debug`` whose Providers read their keys from the environment or from files. Each
case has its own model name, so its own route (and circuit breakers). The fakes record every
request, so the tests check what the provider really received: path, credential headers, and
the translated body.

Covered: OpenAI clients → Anthropic provider (translated: text, tools, streams, usage); OpenAI
clients → OpenAI and Azure providers (relayed; the client's Authorization is never forwarded);
Anthropic clients → a sim pool, an Anthropic provider and an OpenAI provider; unsupported
fields; provider errors in the client's dialect; TLS verification; keys kept out of every log,
answer, metric and admin page; a missing key at start-up.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import MessageParam, ToolParam
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from .conftest import (
    HOST,
    MODEL_HEADER,
    GatewayProcess,
    Process,
    SimFleet,
    assert_openai_error,
    free_port,
    gateway_doc,
    http_get,
    inferlane_command,
    model_server_doc,
    poll,
    pool_doc,
    route_doc,
    running_stack,
    write_config,
)
from .provider_harness import FakeProvider, start_fake_provider

pytestmark = pytest.mark.e2e

ANTHROPIC_KEY = "sk-ant-e2e-anthropic-key-7f3a9c55"
OPENAI_KEY = "sk-e2e-openai-key-51b2d8e4"
AZURE_KEY = "e2e-azure-key-0c94e1aa"
WRONG_KEY = "sk-ant-e2e-wrong-key-3d7b21ff"
CLOSED_KEY = "sk-e2e-closed-port-key-9e8d0b"
CLIENT_KEY = "sk-client-own-key-never-forwarded"
PROVIDER_KEYS = (ANTHROPIC_KEY, OPENAI_KEY, AZURE_KEY, WRONG_KEY, CLOSED_KEY)
ANTHROPIC_ENV = "INFERLANE_E2E_ANTHROPIC_KEY"
AZURE_ENV = "INFERLANE_E2E_AZURE_KEY"
CLOSED_ENV = "INFERLANE_E2E_CLOSED_KEY"
MISSING_ENV = "INFERLANE_E2E_NEVER_SET_KEY"
RUN_TIMEOUT = 60.0  # bound on one CLI run
SHADOW_TIMEOUT = 30.0  # bound on a mirror copy being accounted

CLAUDE_UPSTREAM = "claude-fake-upstream"  # the Anthropic provider's modelNameOverride
ANTHROPIC_VERSION = "2023-06-01"  # the Provider default, whatever version the client sends
AZURE_DEPLOYMENT = "my-deploy"
AZURE_API_VERSION = "2024-10-21"
AZURE_MODEL = "gpt-4o-by-model"  # the deployment of a Provider that names none
SIM_MODEL = "sim-msgs"
PROMPT = "What is the weather like in Paris today?"
TOOL_ARGUMENTS: dict[str, object] = {"city": "Paris", "unit": "celsius"}
WEATHER_SCHEMA: dict[str, object] = {"type": "object", "properties": {"city": {"type": "string"},
                                                   "unit": {"type": "string"}}}
OPENAI_QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
CLAUDE_QUESTION: list[MessageParam] = [{"role": "user", "content": PROMPT}]
OPENAI_TOOLS: list[ChatCompletionToolParam] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": WEATHER_SCHEMA}}]
CLAUDE_TOOLS: list[ToolParam] = [{"name": "get_weather", "description": "Current weather",
                                  "input_schema": WEATHER_SCHEMA}]

# Client-facing model name → the Provider its route sends it to.
PROVIDER_ROUTES = {
    "claude-chat": "claude", "claude-err": "claude", "claude-limited": "claude",
    "claude-stream-err": "claude", "claude-msgs": "claude",
    "gpt-chat": "gpt", "gpt-msgs": "gpt", "gpt-msgs-err": "gpt",
    "azure-chat": "azure", "azure-model": "azure-by-model",
    "wrong-key-chat": "claude-wrong-key", "closed-chat": "closed", "closed-msgs": "closed",
    "no-ca-chat": "claude-no-ca",
}
MIRRORED = "mirror-chat"  # gpt answers; a copy goes to the wrong-key provider


def answer(fake: FakeProvider) -> str:
    """The fake's default answer to ``PROMPT`` as the last user turn."""
    return f"{fake.provider_name} answers: {PROMPT}"


# -- the stack ------------------------------------------------------------------------------


class _DebugLogging(Process):
    """Puts ``--log-level`` (a top-level option) before the subcommand at every start."""

    def start(self) -> None:
        at = len(inferlane_command())
        self.argv[at:at] = ["--log-level", "debug"]
        super().start()


class DebugGateway(GatewayProcess, _DebugLogging):
    """``inferlane --log-level debug serve``: ``GatewayProcess.start`` reaches
    ``_DebugLogging.start`` through the MRO."""


@dataclass(frozen=True, slots=True)
class World:
    gateway: GatewayProcess
    claude: FakeProvider  # Anthropic, HTTPS with a private CA
    gpt: FakeProvider  # OpenAI
    azure: FakeProvider  # Azure OpenAI
    sim: SimFleet

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.api_base, api_key=CLIENT_KEY, max_retries=0,
                             timeout=30.0)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway.base_url, api_key=CLIENT_KEY,
                                   max_retries=0, timeout=30.0)


def provider_doc(name: str, kind: str, base_url: str, credentials: Mapping[str, str],
                 **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "inferlane.dev/v1alpha1", "kind": "Provider",
            "metadata": {"name": name},
            "spec": {"type": kind, "baseURL": base_url, "credentials": dict(credentials),
                     **spec}}


def provider_route_doc(model: str, provider: str,
                       filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "matches": [{"headers": [{"name": MODEL_HEADER, "value": model}]}],
        "backendRefs": [{"group": "inferlane.dev", "kind": "Provider", "name": provider}],
    }
    if filters:
        rule["filters"] = filters
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": f"route-{model}"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [rule]}}


def world_config(log_dir: Path, claude: FakeProvider, gpt: FakeProvider, azure: FakeProvider,
                 sim: SimFleet) -> list[dict[str, Any]]:
    openai_key_file = log_dir / "openai.key"
    openai_key_file.write_text(f"{OPENAI_KEY}\n")
    wrong_key_file = log_dir / "wrong.key"
    wrong_key_file.write_text(WRONG_KEY)
    assert claude.ca_file is not None
    ca = {"caFile": str(claude.ca_file)}
    mirror = {"type": "RequestMirror", "requestMirror": {"percent": 100, "backendRef": {
        "group": "inferlane.dev", "kind": "Provider", "name": "claude-wrong-key"}}}
    [replica] = sim.replicas
    return [
        gateway_doc(),
        provider_doc("claude", "anthropic", claude.url, {"fromEnv": ANTHROPIC_ENV},
                     modelNameOverride=CLAUDE_UPSTREAM, tls=ca),
        provider_doc("claude-wrong-key", "anthropic", claude.url,
                     {"fromFile": str(wrong_key_file)}, tls=ca),
        provider_doc("claude-no-ca", "anthropic", claude.url, {"fromEnv": ANTHROPIC_ENV}),
        provider_doc("gpt", "openai", gpt.openai_base_url, {"fromFile": str(openai_key_file)}),
        provider_doc("azure", "azure-openai", azure.url, {"fromEnv": AZURE_ENV},
                     azure={"apiVersion": AZURE_API_VERSION, "deployment": AZURE_DEPLOYMENT}),
        provider_doc("azure-by-model", "azure-openai", azure.url, {"fromEnv": AZURE_ENV},
                     modelNameOverride=AZURE_MODEL, azure={"apiVersion": AZURE_API_VERSION}),
        provider_doc("closed", "openai", f"http://{HOST}:{free_port()}/v1",
                     {"fromEnv": CLOSED_ENV}),
        *(provider_route_doc(model, provider) for model, provider in PROVIDER_ROUTES.items()),
        provider_route_doc(MIRRORED, "gpt", [mirror]),
        model_server_doc("sim-0", replica.address, [SIM_MODEL], {"app": "sim"}),
        pool_doc("pool-sim", {"app": "sim"}),
        route_doc("route-sim", [SIM_MODEL], "pool-sim"),
    ]


def assert_no_key_in(text: str, where: str) -> None:
    for key in PROVIDER_KEYS:
        assert key not in text, f"a provider key appears in {where}"


@dataclass(frozen=True, slots=True)
class Seen:
    status: int
    headers: str
    body: str


def post(url: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Seen:
    """Everything a client would see of one POST: status, headers and the whole body."""
    sent = {"authorization": f"Bearer {CLIENT_KEY}", **(headers or {})}
    with httpx2.stream("POST", url, json=dict(body), headers=sent, timeout=30.0) as reply:
        text = reply.read().decode(errors="replace")
        return Seen(reply.status_code, json.dumps(list(reply.headers.multi_items())), text)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    log_dir = tmp_path_factory.mktemp("providers")
    with contextlib.ExitStack() as started:
        claude = started.enter_context(start_fake_provider(
            log_dir, name="claude", api_key=ANTHROPIC_KEY, tls=True))
        gpt = started.enter_context(start_fake_provider(log_dir, name="gpt",
                                                        api_key=OPENAI_KEY))
        azure = started.enter_context(start_fake_provider(log_dir, name="azure",
                                                          api_key=AZURE_KEY))
        stack = started.enter_context(running_stack(log_dir))
        sim = stack.sim(models=(SIM_MODEL,))
        config = write_config(log_dir / "gateway.yaml",
                              world_config(log_dir, claude, gpt, azure, sim))
        gateway = DebugGateway(log_dir, config)
        started.callback(gateway.stop)
        with pytest.MonkeyPatch.context() as env:  # the child keeps its copy of the environment
            env.setenv(ANTHROPIC_ENV, ANTHROPIC_KEY)
            env.setenv(AZURE_ENV, AZURE_KEY)
            env.setenv(CLOSED_ENV, CLOSED_KEY)
            gateway.start()
        yield World(gateway, claude, gpt, azure, sim)
        # Whatever the tests sent, debug logging included, no key reached the gateway's output.
        assert_no_key_in(gateway.stdout(), "the gateway's stdout")
        assert_no_key_in(gateway.stderr(), "the gateway's stderr")


@pytest.fixture(autouse=True)
def fresh(world: World) -> None:
    for fake in (world.claude, world.gpt, world.azure):
        fake.clear()


# -- 1. OpenAI clients → Anthropic provider ----------------------------------------------------


def text_of(content: Any) -> str:
    """The text of an Anthropic ``content``: a string or a list of blocks."""
    if isinstance(content, str):
        return content
    return "".join(block["text"] for block in content if block.get("type") == "text")


def test_openai_chat_to_anthropic_is_translated_both_ways(world: World) -> None:
    turns: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello there."},
        {"role": "assistant", "content": "Hi."},
        *OPENAI_QUESTION,
    ]
    with world.openai() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="claude-chat", messages=turns, max_tokens=50, stop=["END"], temperature=0.5)
    completion = raw.parse()
    assert raw.headers["x-inferlane-backend"] == "provider/default/claude"
    assert raw.headers["x-inferlane-attempts"] == "1"
    assert completion.object == "chat.completion"
    assert completion.model == "claude-chat"
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", answer(world.claude))
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len(" ".join(
        ["You are terse.", "Hello there.", "Hi.", PROMPT]).split())
    assert completion.usage.completion_tokens == len(answer(world.claude).split())

    [received] = world.claude.requests()
    assert received["path"] == "/v1/messages"
    headers = received["headers"]
    assert headers["x-api-key"] == ANTHROPIC_KEY
    assert headers["anthropic-version"] == ANTHROPIC_VERSION
    assert "authorization" not in headers  # the client's key stays at the gateway
    body = received["body"]
    assert body["model"] == CLAUDE_UPSTREAM
    assert text_of(body["system"]) == "You are terse."
    assert [(m["role"], text_of(m["content"])) for m in body["messages"]] == [
        ("user", "Hello there."), ("assistant", "Hi."), ("user", PROMPT)]
    assert (body["max_tokens"], body["stop_sequences"], body["temperature"]) == (50, ["END"], 0.5)
    assert not {"stop", "stream_options", "logprobs"} & set(body)


def test_openai_stream_from_anthropic_with_and_without_usage(world: World) -> None:
    with world.openai() as client:
        chunks = list(client.chat.completions.create(
            model="claude-chat", messages=OPENAI_QUESTION, stream=True,
            stream_options={"include_usage": True}))
        plain = list(client.chat.completions.create(model="claude-chat",
                                                    messages=OPENAI_QUESTION, stream=True))
    deltas = [c.choices[0].delta.content for c in chunks
              if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 3  # really streamed, word by word
    assert "".join(deltas) == answer(world.claude)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert {c.model for c in chunks} == {"claude-chat"}
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.prompt_tokens == len(PROMPT.split())
    assert usage_chunk.usage.completion_tokens == len(deltas)
    assert all(c.choices and c.usage is None for c in plain)
    assert "".join(c.choices[0].delta.content or "" for c in plain) == answer(world.claude)
    for received in world.claude.requests():
        assert received["body"]["stream"] is True
        assert "stream_options" not in received["body"]


def test_openai_streamed_tool_call_from_anthropic(world: World) -> None:
    with world.openai() as client, client.chat.completions.stream(
            model="claude-chat", messages=OPENAI_QUESTION, tools=OPENAI_TOOLS) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.id.startswith("toolu_")  # the provider's id, kept
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == TOOL_ARGUMENTS
    [received] = world.claude.requests()
    [tool] = received["body"]["tools"]
    assert (tool["name"], tool["description"], tool["input_schema"]) == (
        "get_weather", "Current weather in a city", WEATHER_SCHEMA)
    assert "function" not in tool


def test_openai_tool_result_round_trip_to_anthropic(world: World) -> None:
    with world.openai() as client:
        first = client.chat.completions.create(model="claude-chat", messages=OPENAI_QUESTION,
                                               tools=OPENAI_TOOLS)
        [call] = first.choices[0].message.tool_calls or []
        assert call.type == "function"
        turns: list[ChatCompletionMessageParam] = [
            *OPENAI_QUESTION,
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": call.id, "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"},
        ]
        second = client.chat.completions.create(model="claude-chat", tools=OPENAI_TOOLS,
                                                messages=turns)
    assert second.choices[0].finish_reason == "stop"
    assert (second.choices[0].message.content or "").startswith("claude answers:")
    _, received = world.claude.requests()
    assistant, result = received["body"]["messages"][1:]
    assert assistant["role"] == "assistant"
    assert [(b["type"], b["id"], b["name"], b["input"]) for b in assistant["content"]] == [
        ("tool_use", call.id, "get_weather", TOOL_ARGUMENTS)]
    assert result["role"] == "user"
    [block] = result["content"]
    assert (block["type"], block["tool_use_id"]) == ("tool_result", call.id)
    assert text_of(block["content"]) == "18 degrees"


# -- 2. OpenAI clients → OpenAI and Azure providers (relayed) ----------------------------------


def test_openai_provider_relays_with_its_own_key(world: World) -> None:
    with world.openai() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-chat", messages=OPENAI_QUESTION,
            extra_headers={"x-request-id": "e2e-request-1"})
        chunks = list(client.chat.completions.create(
            model="gpt-chat", messages=OPENAI_QUESTION, stream=True,
            stream_options={"include_usage": True}))
    completion = raw.parse()
    assert raw.headers["x-inferlane-backend"] == "provider/default/gpt"
    assert raw.headers["x-request-id"] == "e2e-request-1"  # ours, not the provider's
    assert completion.choices[0].message.content == answer(world.gpt)
    assert completion.model == "gpt-chat"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        answer(world.gpt)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(answer(world.gpt).split())
    received = world.gpt.requests()
    assert [r["path"] for r in received] == ["/v1/chat/completions"] * 2
    for request in received:
        assert request["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
        assert CLIENT_KEY not in json.dumps(request["headers"])
        assert request["body"]["model"] == "gpt-chat"
        assert request["body"]["messages"] == OPENAI_QUESTION
    assert received[0]["headers"]["x-request-id"] == "e2e-request-1"
    assert received[1]["body"]["stream_options"] == {"include_usage": True}


def test_azure_provider_gets_api_key_deployment_and_api_version(world: World) -> None:
    with world.openai() as client:
        completion = client.chat.completions.create(
            model="azure-chat", messages=OPENAI_QUESTION, extra_headers={"api-key": CLIENT_KEY})
        chunks = list(client.chat.completions.create(model="azure-chat",
                                                     messages=OPENAI_QUESTION, stream=True))
    assert completion.choices[0].message.content == answer(world.azure)
    assert completion.model == AZURE_DEPLOYMENT  # relayed as Azure answered
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        answer(world.azure)
    received = world.azure.requests()
    assert len(received) == 2
    for request in received:
        assert request["path"] == f"/openai/deployments/{AZURE_DEPLOYMENT}/chat/completions"
        assert request["query"] == {"api-version": AZURE_API_VERSION}
        assert request["headers"]["api-key"] == AZURE_KEY  # not the client's, even when sent
        assert "authorization" not in request["headers"]
        assert request["body"]["messages"] == OPENAI_QUESTION


def test_azure_deployment_defaults_to_the_model_sent(world: World) -> None:
    with world.openai() as client:
        completion = client.chat.completions.create(model="azure-model",
                                                    messages=OPENAI_QUESTION)
    assert completion.choices[0].message.content == answer(world.azure)
    [request] = world.azure.requests()
    # No azure.deployment: the model name after modelNameOverride addresses the deployment.
    assert request["path"] == f"/openai/deployments/{AZURE_MODEL}/chat/completions"
    assert request["query"] == {"api-version": AZURE_API_VERSION}
    assert request["body"]["model"] == AZURE_MODEL


# -- 3. Anthropic clients → pool, Anthropic provider, OpenAI provider --------------------------


def test_anthropic_client_to_a_sim_pool_is_translated(world: World) -> None:
    limit = 16  # the sim's chat endpoint may well write all of them
    with world.anthropic() as claude:
        raw = claude.messages.with_raw_response.create(model=SIM_MODEL, max_tokens=limit,
                                                       messages=CLAUDE_QUESTION)
        with claude.messages.stream(model=SIM_MODEL, max_tokens=limit,
                                    messages=CLAUDE_QUESTION) as stream:
            deltas = list(stream.text_stream)
            final = stream.get_final_message()
    assert raw.headers["x-inferlane-backend"] == "pool/default/pool-sim"
    for message in (raw.parse(), final):
        assert message.id.startswith("msg_")
        assert (message.role, message.model) == ("assistant", SIM_MODEL)
        [block] = message.content
        assert block.type == "text"
        assert block.text.strip()
        assert message.usage.input_tokens > 0
        written = message.usage.output_tokens
        assert written == len(block.text.split()) <= limit
        # finish_reason "length" is stop_reason "max_tokens"; "stop" is "end_turn".
        assert message.stop_reason == ("max_tokens" if written == limit else "end_turn")
    assert len(deltas) > 1
    assert final.content[0].type == "text"
    assert "".join(deltas) == final.content[0].text


def test_anthropic_client_to_anthropic_provider_is_relayed(world: World) -> None:
    with world.anthropic() as claude:
        raw = claude.messages.with_raw_response.create(
            model="claude-msgs", max_tokens=64, messages=CLAUDE_QUESTION, system="Be brief.")
        with claude.messages.stream(model="claude-msgs", max_tokens=64,
                                    messages=CLAUDE_QUESTION) as stream:
            final = stream.get_final_message()
    message = raw.parse()
    assert raw.headers["x-inferlane-backend"] == "provider/default/claude"
    for reply in (message, final):
        assert reply.content[0].type == "text"
        assert reply.content[0].text == answer(world.claude)
        assert reply.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(answer(world.claude).split())
    received = world.claude.requests()
    assert len(received) == 2
    for request in received:
        assert request["path"] == "/v1/messages"
        assert request["headers"]["x-api-key"] == ANTHROPIC_KEY
        assert request["headers"]["anthropic-version"] == ANTHROPIC_VERSION
        assert "authorization" not in request["headers"]
        assert request["body"]["model"] == CLAUDE_UPSTREAM  # modelNameOverride applied
        assert request["body"]["messages"] == CLAUDE_QUESTION
        assert request["body"]["max_tokens"] == 64
    assert received[0]["body"]["system"] == "Be brief."
    assert received[1]["body"]["stream"] is True


def test_anthropic_client_to_openai_provider_is_translated(world: World) -> None:
    with world.anthropic() as claude:
        message = claude.messages.create(model="gpt-msgs", max_tokens=64, system="Be brief.",
                                         messages=CLAUDE_QUESTION)
        with claude.messages.stream(model="gpt-msgs", max_tokens=64,
                                    messages=CLAUDE_QUESTION) as stream:
            deltas = list(stream.text_stream)
            final = stream.get_final_message()
        tool_use = claude.messages.create(model="gpt-msgs", max_tokens=64,
                                          messages=CLAUDE_QUESTION, tools=CLAUDE_TOOLS)
    assert message.model == "gpt-msgs"
    assert message.content[0].type == "text"
    assert message.content[0].text == answer(world.gpt)
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        len(f"Be brief. {PROMPT}".split()), len(answer(world.gpt).split()))
    assert "".join(deltas) == answer(world.gpt)
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (len(PROMPT.split()),
                                                                     len(deltas))
    assert tool_use.stop_reason == "tool_use"
    [block] = tool_use.content
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("get_weather", TOOL_ARGUMENTS)

    plain, streamed, with_tools = world.gpt.requests()
    for request in (plain, streamed, with_tools):
        assert request["path"] == "/v1/chat/completions"
        assert request["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
        assert "x-api-key" not in request["headers"]
        assert request["body"]["model"] == "gpt-msgs"
        assert request["body"]["max_tokens"] == 64
    assert plain["body"]["messages"] == [{"role": "system", "content": "Be brief."},
                                         *OPENAI_QUESTION]
    assert streamed["body"]["stream"] is True
    assert streamed["body"]["stream_options"] == {"include_usage": True}
    [tool] = with_tools["body"]["tools"]
    assert tool["type"] == "function"
    assert (tool["function"]["name"], tool["function"]["parameters"]) == ("get_weather",
                                                                         WEATHER_SCHEMA)


def test_anthropic_tool_result_round_trip_to_openai(world: World) -> None:
    turns: list[MessageParam] = [
        *CLAUDE_QUESTION,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_e2e_1",
                                           "name": "get_weather", "input": TOOL_ARGUMENTS}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_e2e_1",
                                      "content": "18 degrees"}]},
    ]
    with world.anthropic() as claude:
        message = claude.messages.create(model="gpt-msgs", max_tokens=64, tools=CLAUDE_TOOLS,
                                         messages=turns)
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text == answer(world.gpt)
    [received] = world.gpt.requests()
    assistant, result = received["body"]["messages"][1:]
    [call] = assistant["tool_calls"]
    assert (call["id"], call["type"], call["function"]["name"]) == (
        "toolu_e2e_1", "function", "get_weather")
    assert json.loads(call["function"]["arguments"]) == TOOL_ARGUMENTS
    assert result["role"] == "tool"
    assert result["tool_call_id"] == "toolu_e2e_1"
    assert result["content"] == "18 degrees"


# -- 4. unsupported fields ----------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [("logprobs", True), ("frequency_penalty", 0.5),
                                              ("n", 2), ("temperature", 1.5)])
def test_unsupported_field_is_a_400_naming_it(world: World, field: str, value: Any) -> None:
    with world.openai() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="claude-chat", messages=OPENAI_QUESTION,
                                           extra_body={field: value})
        error = assert_openai_error(caught.value.response.json())
        assert error["type"] == "invalid_request_error"
        assert error["param"] == field
        assert f"'{field}'" in error["message"]
        assert "Anthropic" in error["message"]
        assert world.claude.requests() == []  # refused before the provider
        # The gateway keeps serving, the same route included.
        after = client.chat.completions.create(model="claude-chat", messages=OPENAI_QUESTION)
    assert after.choices[0].message.content == answer(world.claude)


def test_inert_and_ignored_fields_are_accepted_and_not_sent(world: World) -> None:
    with world.openai() as client:
        completion = client.chat.completions.create(
            model="claude-chat", messages=OPENAI_QUESTION, n=1, logprobs=False, seed=7,
            presence_penalty=0, user="user-17", metadata={"team": "e2e"})
    assert completion.choices[0].message.content == answer(world.claude)
    [received] = world.claude.requests()
    body = received["body"]
    assert body["metadata"] == {"user_id": "user-17"}
    assert body["max_tokens"] == 4096  # none sent; Anthropic requires one
    assert not {"n", "logprobs", "seed", "presence_penalty", "user"} & set(body)


def test_completions_and_embeddings_have_no_anthropic_equivalent(world: World) -> None:
    with world.openai() as client:
        with pytest.raises(openai.BadRequestError) as completions:
            client.completions.create(model="claude-chat", prompt=PROMPT)
        with pytest.raises(openai.BadRequestError) as embeddings:
            client.embeddings.create(model="claude-chat", input=PROMPT)
    for caught, path in ((completions, "/v1/completions"), (embeddings, "/v1/embeddings")):
        error = assert_openai_error(caught.value.response.json())
        assert error["message"].startswith(
            f"{path} is not supported by Anthropic provider default/claude")
    assert world.claude.requests() == []


def test_anthropic_client_unsupported_field_is_an_anthropic_400(world: World) -> None:
    with world.anthropic() as claude, pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="gpt-msgs", max_tokens=16, messages=CLAUDE_QUESTION,
                               extra_body={"top_k": 5})
    body = caught.value.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "'top_k'" in body["error"]["message"]
    assert world.gpt.requests() == []


# -- 5. provider errors in the client's dialect -------------------------------------------------


@pytest.mark.parametrize(("status", "raised", "message"), [
    (400, openai.BadRequestError, "invalid_request_error (400)"),
    (500, openai.InternalServerError, "Internal server error"),
])
def test_anthropic_provider_error_reaches_openai_clients_in_openai_shape(
        world: World, status: int, raised: type[openai.APIStatusError], message: str) -> None:
    world.claude.script({"status": status})
    with world.openai() as client, pytest.raises(raised) as caught:
        client.chat.completions.create(model="claude-err", messages=OPENAI_QUESTION)
    response = caught.value.response
    assert response.status_code == status
    assert response.headers["x-inferlane-backend"] == "provider/default/claude"
    error = assert_openai_error(response.json())
    assert error["message"] == message
    assert error["type"] == ("invalid_request_error" if status < 500 else "upstream_error")
    assert len(world.claude.requests()) == 1  # no retry policy on this route


@pytest.mark.parametrize(("action", "raised", "error_type", "message"), [
    ({"status": 500}, anthropic.InternalServerError, "api_error",
     "The server had an error while processing your request. Sorry about that!"),
    ({"context_window": True}, anthropic.BadRequestError, "invalid_request_error",
     "This model's maximum context length is 128000 tokens."),
], ids=["500", "context-window"])
def test_openai_provider_error_reaches_anthropic_clients_in_anthropic_shape(
        world: World, action: dict[str, Any], raised: type[anthropic.APIStatusError],
        error_type: str, message: str) -> None:
    world.gpt.script(action)
    with world.anthropic() as claude, pytest.raises(raised) as caught:
        claude.messages.create(model="gpt-msgs-err", max_tokens=64, messages=CLAUDE_QUESTION)
    body = caught.value.response.json()
    assert set(body) == {"type", "error"}
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["error"]["message"].startswith(message)


def test_provider_rate_limit_keeps_retry_after(world: World) -> None:
    world.claude.script({"status": 429, "retry_after": "7"})
    with world.openai() as client, pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="claude-limited", messages=OPENAI_QUESTION)
    response = caught.value.response
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    error = assert_openai_error(response.json())
    assert "rate limit" in error["message"]


def test_anthropic_client_connect_error_is_anthropic_shaped(world: World) -> None:
    with world.anthropic() as claude, pytest.raises(anthropic.InternalServerError) as caught:
        claude.messages.create(model="closed-msgs", max_tokens=16, messages=CLAUDE_QUESTION)
    assert caught.value.status_code == 502
    body = caught.value.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert body["error"]["message"].startswith("Could not connect to provider default/closed")


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


def test_anthropic_stream_error_reaches_openai_clients_as_an_api_error(world: World) -> None:
    world.claude.script({"stream_error_after": 2})
    deltas: list[str] = []
    with world.openai() as client:
        stream = client.chat.completions.create(model="claude-stream-err",
                                                messages=OPENAI_QUESTION, stream=True)
        with pytest.raises(openai.APIError) as caught:
            deltas.extend(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "".join(deltas) == " ".join(answer(world.claude).split()[:2]) + " "
    assert caught.value.message == "Overloaded"


def test_anthropic_stream_error_is_the_last_frame_openai_clients_get(world: World) -> None:
    world.claude.script({"stream_error_after": 2})
    reply = post(f"{world.gateway.api_base}/chat/completions",
                 {"model": "claude-stream-err", "stream": True, "messages": OPENAI_QUESTION})
    assert reply.status == 200
    frames = sse_data(reply.body)
    errors = [frame for frame in frames if '"error"' in frame]
    assert errors == [frames[-1]], frames
    assert json.loads(frames[-1])["error"]["message"] == "Overloaded"


def test_openai_stream_error_reaches_anthropic_clients_as_an_error_event(world: World) -> None:
    world.gpt.script({"stream_error_after": 2})
    deltas: list[str] = []
    with world.anthropic() as claude, claude.messages.stream(
            model="gpt-msgs-err", max_tokens=64, messages=CLAUDE_QUESTION) as stream, \
            pytest.raises(anthropic.APIStatusError) as caught:
        deltas.extend(stream.text_stream)
    assert "".join(deltas) == " ".join(answer(world.gpt).split()[:2]) + " "
    assert caught.value.body == {"type": "error", "error": {
        "type": "api_error",
        "message": "The server had an error while processing your request. Sorry about that!"}}


# -- 6. TLS and secrets ----------------------------------------------------------------------


def test_tls_is_verified_by_default(world: World) -> None:
    with world.openai() as client:
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="no-ca-chat", messages=OPENAI_QUESTION)
        trusted = client.chat.completions.create(model="claude-chat", messages=OPENAI_QUESTION)
    assert caught.value.status_code == 502
    error = assert_openai_error(caught.value.response.json())
    assert "certificate verification" in error["message"]
    assert "claude-no-ca" in error["message"]
    assert trusted.choices[0].message.content == answer(world.claude)
    [received] = world.claude.requests()  # the unverified one never got past the handshake
    assert received["body"]["model"] == CLAUDE_UPSTREAM


def test_provider_keys_never_leak(world: World) -> None:
    api = world.gateway.api_base
    chat = {"messages": OPENAI_QUESTION}
    seen = {
        "anthropic": post(f"{api}/chat/completions", {"model": "claude-chat", **chat}),
        "anthropic stream": post(f"{api}/chat/completions",
                                 {"model": "claude-chat", "stream": True, **chat}),
        "anthropic messages": post(f"{api}/messages", {
            "model": "claude-msgs", "max_tokens": 32, "messages": CLAUDE_QUESTION},
            {"anthropic-version": ANTHROPIC_VERSION}),
        "openai": post(f"{api}/chat/completions", {"model": "gpt-chat", **chat}),
        "azure": post(f"{api}/chat/completions", {"model": "azure-chat", **chat}),
        "mirrored": post(f"{api}/chat/completions", {"model": MIRRORED, **chat}),
        "wrong key": post(f"{api}/chat/completions", {"model": "wrong-key-chat", **chat}),
        "closed port": post(f"{api}/chat/completions", {"model": "closed-chat", **chat}),
        "no CA": post(f"{api}/chat/completions", {"model": "no-ca-chat", **chat}),
    }
    statuses = {name: reply.status for name, reply in seen.items()}
    assert statuses == {**dict.fromkeys(seen, 200), "wrong key": 401, "closed port": 502,
                        "no CA": 502}, statuses
    assert "invalid x-api-key" in seen["wrong key"].body
    assert "Could not connect to provider default/closed" in seen["closed port"].body
    assert "certificate verification" in seen["no CA"].body

    def shadow_accounted() -> str | None:
        status, body = http_get(f"{world.gateway.base_url}/admin/shadow")
        pairs = json.loads(body)["pairs"] if status == 200 else []
        done = any(p["primary_model"] == MIRRORED and p["compared"] + sum(p["dropped"].values())
                   for p in pairs)
        return body.decode() if done else None

    shadow = poll(shadow_accounted, "the mirror copy to the wrong-key provider", SHADOW_TIMEOUT)
    assert any(r["headers"].get("x-api-key") == WRONG_KEY for r in world.claude.requests())
    for name, reply in seen.items():
        assert_no_key_in(reply.headers, f"the headers of the {name} answer")
        assert_no_key_in(reply.body, f"the body of the {name} answer")
    assert_no_key_in(shadow, "/admin/shadow")
    assert_no_key_in(world.gateway.metrics(), "/metrics")
    status, backends = http_get(f"{world.gateway.base_url}/admin/backends")
    assert status == 200
    assert_no_key_in(backends.decode(), "/admin/backends")
    at = len(inferlane_command())
    assert world.gateway.argv[at:at + 3] == ["--log-level", "debug", "serve"]
    assert_no_key_in(world.gateway.stderr(), "the gateway's stderr")
    assert_no_key_in(world.gateway.stdout(), "the gateway's stdout")


# -- 7. a missing key ----------------------------------------------------------------------


def test_missing_key_stops_serve_but_not_validate(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MISSING_ENV, raising=False)
    config = write_config(tmp_path / "missing-key.yaml", [
        gateway_doc(),
        provider_doc("keyless", "openai", f"http://{HOST}:{free_port()}/v1",
                     {"fromEnv": MISSING_ENV}),
        provider_route_doc("keyless-chat", "keyless"),
    ])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(inferlane_command(*args), capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, check=False)

    served = run("serve", "-c", str(config), "--host", HOST, "--port", str(free_port()))
    assert served.returncode == 2, served.stderr
    assert f"Provider/keyless: spec.credentials.fromEnv: environment variable {MISSING_ENV}" \
        in served.stderr
    validated = run("validate", str(config))
    assert validated.returncode == 0, validated.stderr
    assert "1 Provider" in validated.stdout

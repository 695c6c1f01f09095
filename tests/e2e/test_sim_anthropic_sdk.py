"""The official ``anthropic`` SDK against a real ``inferlane sim`` process on ``/v1/messages``.

Proves the simulator can stand in for an Anthropic provider in offline tests: the SDK parses its
messages (text, stop_reason, usage), its streams (text deltas, the accumulated final message with
both token counts), system prompts and multi-turn conversations, and gets a typed
``BadRequestError`` carrying our message for a field the translation rejects.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from anthropic.types import Message, MessageParam

from .conftest import SimReplica, running_stack

pytestmark = pytest.mark.e2e

MODEL = "sim-model"
QUESTION: list[MessageParam] = [{"role": "user", "content": "Say something about queues."}]


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimReplica]:
    with running_stack(tmp_path_factory.mktemp("sim-anthropic")) as stack:
        yield stack.sim(models=(MODEL,)).replicas[0]


@pytest.fixture
def client(replica: SimReplica) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=replica.url, api_key="unused", max_retries=0) as sdk:
        yield sdk


def assert_complete(message: Message) -> str:
    """The text of a finished message whose shape and usage are what a provider sends."""
    assert message.id.startswith("msg_")
    assert (message.role, message.model) == ("assistant", MODEL)
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text"
    text = message.content[0].text
    assert text.strip()
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == len(text.split())
    return text


def prompt_tokens(message: Message) -> int:
    """The whole prompt: Anthropic's input_tokens leaves out prefix-cache reads."""
    return message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)


def test_create_returns_text_stop_reason_and_usage(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=1024, messages=QUESTION)
    assert_complete(message)


def test_max_tokens_is_a_cap(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=4, messages=QUESTION)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 4


def test_stream_helper_yields_text_deltas_and_the_final_message(
        client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=QUESTION) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) > 1
    assert "".join(deltas) == assert_complete(final)
    assert final.usage.output_tokens == len(deltas)
    # The same prompt, not streamed, gives the same words: one engine path for both.
    whole = client.messages.create(model=MODEL, max_tokens=1024, messages=QUESTION)
    assert assert_complete(whole) == "".join(deltas)


def test_create_stream_true_yields_the_event_sequence(client: anthropic.Anthropic) -> None:
    events = list(client.messages.create(model=MODEL, max_tokens=1024, messages=QUESTION,
                                         stream=True))
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == len(kinds) - 5
    assert delta.usage.input_tokens is not None
    assert delta.usage.input_tokens > 0


def test_system_and_multi_turn(client: anthropic.Anthropic) -> None:
    turns: list[MessageParam] = [
        *QUESTION,
        {"role": "assistant", "content": "Queues hold requests."},
        {"role": "user", "content": [{"type": "text", "text": "And then?"}]},
    ]
    plain = client.messages.create(model=MODEL, max_tokens=1024, messages=QUESTION)
    conversation = client.messages.create(model=MODEL, max_tokens=1024, messages=turns,
                                          system="You are a terse assistant.")
    assert_complete(conversation)
    # The system prompt and the history are part of the prompt the engine sees.
    assert prompt_tokens(conversation) > prompt_tokens(plain)
    with_blocks = client.messages.create(
        model=MODEL, max_tokens=1024, messages=turns,
        system=[{"type": "text", "text": "You are a terse assistant."}])
    assert with_blocks.content == conversation.content
    # Same prompt again: the prefix cache serves part of it, reported as cache reads.
    assert with_blocks.usage.cache_read_input_tokens
    assert prompt_tokens(with_blocks) == prompt_tokens(conversation)


def test_unsupported_field_is_a_bad_request_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        # The pinned SDK's API version has no top_k parameter any more; send it all the same.
        client.messages.create(model=MODEL, max_tokens=16, messages=QUESTION,
                               extra_body={"top_k": 5})
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict)
    error = caught.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert "'top_k'" in error["message"]
    assert "Chat Completions has no top_k" in error["message"]


def test_unknown_model_is_a_not_found_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-model", max_tokens=16, messages=QUESTION)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "not_found_error"

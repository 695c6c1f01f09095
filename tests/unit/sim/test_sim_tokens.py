"""The approximate tokenizer, chat rendering and deterministic outputs."""

from __future__ import annotations

import pytest

from inferlane.sim.tokens import (
    FILLER_WORDS,
    Prompt,
    PromptError,
    natural_output_length,
    output_text,
    parse_prompts,
    render_chat,
)


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2),
                                              ("x" * 400, 100)])
def test_about_four_characters_per_token(text: str, tokens: int) -> None:
    assert Prompt.from_text(text).num_tokens == tokens


def test_chat_history_is_a_prefix_of_the_longer_conversation() -> None:
    system = {"role": "system", "content": "You are terse."}
    first = render_chat([system, {"role": "user", "content": "hi"}])
    longer = render_chat([system, {"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "hello"},
                          {"role": "user", "content": "again"}])
    assert longer.startswith(first.removesuffix("<|im_start|>assistant\n"))


def test_content_parts_and_tools_are_rendered() -> None:
    text = render_chat([{"role": "user", "content": [{"type": "text", "text": "look"},
                                                     {"type": "image_url", "image_url": {}}]}],
                       tools=[{"type": "function"}])
    assert "look<|image_url|>" in text
    assert '"function"' in text


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], "non-empty"),
        ("hi", "non-empty"),
        (["hi"], r"messages\[0\] must be an object"),
        ([{"content": "x"}], r"messages\[0\].role"),
        ([{"role": "user", "content": 3}], r"messages\[0\].content"),
        ([{"role": "user", "content": [{"type": "text"}]}], r"content\[0\].text"),
    ],
)
def test_bad_messages(messages: object, error: str) -> None:
    with pytest.raises(PromptError, match=error):
        render_chat(messages)


@pytest.mark.parametrize(
    ("value", "counts"),
    [("abcdefgh", [2]), ([1, 2, 3], [3]), (["ab", "abcdefghi"], [1, 3]), ([[1, 2], [3]], [2, 1])],
)
def test_prompt_shapes(value: object, counts: list[int]) -> None:
    assert [p.num_tokens for p in parse_prompts(value, "prompt")] == counts


@pytest.mark.parametrize("value", [None, 3, [], "", [""], [1.5], [["a"]], [True]])
def test_bad_prompts(value: object) -> None:
    with pytest.raises(PromptError, match="prompt"):
        parse_prompts(value, "prompt")


def test_output_is_deterministic_and_in_range() -> None:
    lengths = {natural_output_length(seed, 16, 128) for seed in range(500)}
    assert min(lengths) >= 16
    assert max(lengths) <= 128
    assert len(lengths) > 50
    assert natural_output_length(7, 16, 128) == natural_output_length(7, 16, 128)
    text = output_text(42, 0, 10)
    assert text == output_text(42, 0, 4) + output_text(42, 4, 10)
    assert all(word in FILLER_WORDS for word in text.split())
    assert len(text.split()) == 10

import pytest

from inferlane.routing.prompt import prompt_facts


@pytest.mark.parametrize(
    ("document", "text", "tokens", "max_tokens"),
    [
        ({"messages": [{"role": "user", "content": "a" * 40}]}, "user: " + "a" * 40, 15, None),
        ({"messages": [{"role": "system", "content": "sys"},
                       {"role": "user", "content": [{"type": "text", "text": "hi"},
                                                    {"type": "image_url", "image_url": {}}]}],
          "max_tokens": 7},
         "system: sys\nuser: hi", 13, 7),
        ({"prompt": "x" * 400, "max_completion_tokens": 3, "max_tokens": 9}, "x" * 400, 100, 3),
        ({"prompt": ["ab", "cd"]}, "ab\ncd", 1, None),
        ({"prompt": [1, 2, 3]}, "", 0, None),
        ({"input": "embed me"}, "embed me", 2, None),
        ({"messages": "not a list", "max_tokens": True}, "", 0, None),
        ({"messages": [None, {"content": None}]}, "\n", 8, None),
    ],
)
def test_prompt_facts(document: dict[str, object], text: str, tokens: int,
                      max_tokens: int | None) -> None:
    facts = prompt_facts(document)
    assert (facts.text, facts.prompt_tokens, facts.max_tokens) == (text, tokens, max_tokens)

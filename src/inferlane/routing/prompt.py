"""What the scheduler needs to know about a request body: its prompt text and sizes.

Pure: the parsed JSON body in, a ``PromptFacts`` out. The text feeds prefix-cache affinity
(the same leading text maps to the same cache blocks on a server), the token counts feed load
and latency estimates. Tokens are estimated at ~4 characters each (REFERENCE §2): the gateway
has no tokenizer for arbitrary models, and affinity only needs consistency, not exact counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4
# Output tokens assumed for a request without max_tokens (the in-flight token view).
EXPECTED_OUTPUT_TOKENS = 128
# Per message, chat templates add role markers; counting them keeps estimates honest for
# many short messages.
_TEMPLATE_TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True, slots=True)
class PromptFacts:
    text: str
    prompt_tokens: int
    max_tokens: int | None

    @property
    def expected_tokens(self) -> int:
        """Prompt plus expected output tokens: what a dispatch adds to the in-flight view."""
        return self.prompt_tokens + (self.max_tokens or EXPECTED_OUTPUT_TOKENS)

    def uncached_tokens(self, prefix_match: float | None) -> int:
        """Prompt tokens left to prefill on an endpoint whose prefix-cache score (matched
        fraction of the prompt's blocks) is ``prefix_match``."""
        return round(self.prompt_tokens * (1.0 - (prefix_match or 0.0)))


def prompt_facts(document: dict[str, Any]) -> PromptFacts:
    messages = document.get("messages")
    if isinstance(messages, list):
        parts = [_message_text(message) for message in messages]
        system = document.get("system")  # Anthropic Messages keeps it outside the messages
        if system is not None:
            parts.insert(0, _message_text({"role": "system", "content": system}))
        text = "\n".join(parts)
        tokens = len(text) // CHARS_PER_TOKEN + _TEMPLATE_TOKENS_PER_MESSAGE * len(parts)
    else:
        text = _plain_text(document.get("prompt", document.get("input")))
        tokens = len(text) // CHARS_PER_TOKEN
    max_tokens = document.get("max_completion_tokens", document.get("max_tokens"))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        max_tokens = None
    return PromptFacts(text=text, prompt_tokens=max(tokens, 1 if text else 0),
                       max_tokens=max_tokens)


def _message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    role = message.get("role")
    content = message.get("content")
    prefix = f"{role}: " if isinstance(role, str) else ""
    if isinstance(content, str):
        return prefix + content
    if isinstance(content, list):  # content parts: keep the text ones, in order
        texts = [part.get("text", "") for part in content
                 if isinstance(part, dict) and isinstance(part.get("text"), str)]
        return prefix + "".join(texts)
    return prefix


def _plain_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "\n".join(value)
    return ""  # token-id prompts carry no text we can hash consistently

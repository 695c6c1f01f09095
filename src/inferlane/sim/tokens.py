"""Approximate tokenizer and deterministic output text for the simulated model servers.

No real tokenizer is loaded: a token is ~4 characters of prompt text (or one id of a
pre-tokenized prompt). What matters for the simulation is that the count is deterministic and
that a shared text prefix yields the same leading blocks, so prefix caching behaves as on a real
server. Chat messages are rendered with a ChatML-like template first, so a shared system prompt
or conversation history is a shared prefix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

CHARS_PER_TOKEN = 4

# One filler word per output token; a leading space as most BPE vocabularies have.
FILLER_WORDS: tuple[str, ...] = (
    "the", "model", "answers", "with", "simulated", "tokens", "that", "carry", "no",
    "meaning", "but", "arrive", "at", "a", "realistic", "pace", "for", "routing", "tests",
    "and", "benchmarks", "of", "an", "inference", "gateway", "which", "picks", "one",
    "replica", "per", "request", "based", "on", "queue", "length", "cache", "usage",
    "prefix", "hits", "adapters", "while", "each", "step", "decodes", "every", "running",
    "sequence", "in", "batch", "so", "latency", "grows", "load", "as", "expected", "from",
    "continuous", "batching", "engines", "like", "vllm", "this", "is", "fine",
)
_WORD_TEXT: tuple[str, ...] = tuple(" " + w for w in FILLER_WORDS)
# Pre-encoded JSON strings: the streaming path splices them into chunk templates.
WORD_JSON: tuple[bytes, ...] = tuple(orjson.dumps(w) for w in _WORD_TEXT)


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt as the engine sees it: either text or pre-tokenized ids."""

    text: str | None
    token_ids: tuple[int, ...] | None
    num_tokens: int

    @classmethod
    def from_text(cls, text: str) -> Prompt:
        return cls(text=text, token_ids=None, num_tokens=-(-len(text) // CHARS_PER_TOKEN))

    @classmethod
    def from_token_ids(cls, token_ids: tuple[int, ...]) -> Prompt:
        return cls(text=None, token_ids=token_ids, num_tokens=len(token_ids))

    def block_payloads(self, block_size: int) -> Iterator[bytes]:
        """Yield the bytes of each *full* block of ``block_size`` tokens (partial tail skipped)."""
        full_blocks = self.num_tokens // block_size
        if self.text is not None:
            width = block_size * CHARS_PER_TOKEN
            for i in range(full_blocks):
                yield self.text[i * width:(i + 1) * width].encode()
        elif self.token_ids is not None:
            for i in range(full_blocks):
                chunk = self.token_ids[i * block_size:(i + 1) * block_size]
                yield b",".join(str(t).encode() for t in chunk)

    def fingerprint(self) -> int:
        """A stable 64-bit digest of the whole prompt (seeds the output length and words)."""
        data = self.text.encode() if self.text is not None else repr(self.token_ids).encode()
        return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class PromptError(ValueError):
    """The request's messages or prompt cannot be rendered; the message names the field."""


def _content_text(content: object, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise PromptError(f"{where}.content[{i}] must be an object with a 'type'")
            if part["type"] == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise PromptError(f"{where}.content[{i}].text must be a string")
                parts.append(text)
            else:
                # Images/audio cost tokens on a real server; a placeholder keeps counts stable.
                parts.append(f"<|{part['type']}|>")
        return "".join(parts)
    raise PromptError(f"{where}.content must be a string or a list of content parts")


def render_chat(messages: object, tools: object = None) -> str:
    """Render chat messages with a ChatML-like template, ending with the assistant header."""
    if not isinstance(messages, list) or not messages:
        raise PromptError("'messages' must be a non-empty list")
    out: list[str] = []
    if tools is not None:
        out.append(f"<|im_start|>tools\n{orjson.dumps(tools).decode()}<|im_end|>\n")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise PromptError(f"{where} must be an object")
        role = message.get("role")
        if not isinstance(role, str):
            raise PromptError(f"{where}.role must be a string")
        out.append(f"<|im_start|>{role}\n{_content_text(message.get('content'), where)}")
        out.append("<|im_end|>\n")
    out.append("<|im_start|>assistant\n")
    return "".join(out)


def _is_token_list(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    )


def parse_prompts(value: object, field: str) -> list[Prompt]:
    """Parse a completions ``prompt`` / embeddings ``input``: str, [str], [int] or [[int]]."""
    if isinstance(value, str):
        prompts = [Prompt.from_text(value)]
    elif _is_token_list(value) and value:
        assert isinstance(value, list)
        prompts = [Prompt.from_token_ids(tuple(value))]
    elif isinstance(value, list) and value:
        prompts = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                prompts.append(Prompt.from_text(item))
            elif _is_token_list(item):
                assert isinstance(item, list)
                prompts.append(Prompt.from_token_ids(tuple(item)))
            else:
                raise PromptError(f"'{field}[{i}]' must be a string or a list of token ids")
    else:
        raise PromptError(f"'{field}' must be a string, a list of strings or token ids")
    for i, prompt in enumerate(prompts):
        if prompt.num_tokens == 0:
            raise PromptError(f"'{field}' item {i} is empty")
    return prompts


def _mix(value: int) -> int:
    # splitmix64 finaliser: cheap, stateless, well distributed.
    value = (value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return value ^ (value >> 31)


def natural_output_length(seed: int, low: int, high: int) -> int:
    """Deterministic length in ``[low, high]`` for a request that gives no ``max_tokens``."""
    return low + _mix(seed) % (high - low + 1)


def output_word_index(seed: int, position: int) -> int:
    """Index into ``FILLER_WORDS`` of the token at ``position`` of an output seeded by ``seed``."""
    return _mix(seed ^ (position * 0x100000001B3)) % len(FILLER_WORDS)


def output_text(seed: int, start: int, stop: int) -> str:
    """The output text of tokens ``start..stop-1``."""
    return "".join(_WORD_TEXT[output_word_index(seed, i)] for i in range(start, stop))

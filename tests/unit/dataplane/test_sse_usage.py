import pytest

from inferlane.dataplane.sse import SseUsageScanner, usage_from_body

STREAM = (
    b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7}}\n\n'
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("size", [1, 3, 7, 16, 64, len(STREAM)])
def test_usage_found_whatever_the_chunking(size: int) -> None:
    scanner = SseUsageScanner()
    for start in range(0, len(STREAM), size):
        scanner.feed(STREAM[start:start + size])
    assert scanner.usage.seen
    assert (scanner.usage.prompt_tokens, scanner.usage.completion_tokens) == (12, 7)


def test_stream_without_usage_reports_none() -> None:
    scanner = SseUsageScanner()
    scanner.feed(b'data: {"choices":[],"usage":null}\n\ndata: [DONE]\n\n')
    assert not scanner.usage.seen


@pytest.mark.parametrize(
    ("body", "seen", "tokens"),
    [
        (b'{"usage":{"prompt_tokens":3,"completion_tokens":4}}', True, (3, 4)),
        (b'{"choices":[]}', False, (0, 0)),
        (b"not json but has \"usage\"", False, (0, 0)),
        (b'["usage"]', False, (0, 0)),
    ],
)
def test_usage_from_body(body: bytes, seen: bool, tokens: tuple[int, int]) -> None:
    usage = usage_from_body(body)
    assert usage.seen is seen
    assert (usage.prompt_tokens, usage.completion_tokens) == tokens


"""Model-server ``/metrics`` pages → ``ServerMetrics``, for vLLM, SGLang and TensorRT-LLM.

Pure and allocation-light: the scraper calls this for every endpoint every ~50 ms, so it does not
split the page into lines or build a model of every family. For each metric it needs it searches
the page for ``\\n<name>`` and decodes only those sample lines; comments and the other families
(histogram buckets are most of a page) are never looked at. Labels are parsed only for the info
gauges whose labels carry the data (cache shape, LoRA adapters).

Aggregation, when a family has several series (several ``model_name``, data-parallel ``engine`` or
``dp_rank`` values): waiting and running are summed, KV usage is the maximum, and the cache shape
comes from the first series. ``vllm:lora_requests_info`` keeps old label sets exposed; the current
one has the largest value (the time it was last current).

Waiting, running and KV usage are required: a page without them (wrong engine, wrong path, a
proxy's error page) raises ``MetricsParseError`` rather than reading as an idle server, which would
attract all traffic. So do malformed sample lines and non-finite values of those three.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, TypeGuard

from inferlane.errors import MetricsParseError
from inferlane.scheduling.types import ServerMetrics

EngineName = Literal["vllm", "sglang", "trtllm"]
ENGINES: frozenset[str] = frozenset(("vllm", "sglang", "trtllm"))


def is_engine(name: str) -> TypeGuard[EngineName]:
    """Whether ``name`` is an engine whose metric names we know."""
    return name in ENGINES


@dataclass(frozen=True, slots=True)
class _Dialect:
    """Metric names of one engine; tuples are alternatives, the first family present wins."""

    waiting: tuple[bytes, ...]
    running: tuple[bytes, ...]
    kv_usage: tuple[bytes, ...]
    cache_info: bytes | None = None  # an info gauge whose labels carry the cache shape
    block_size_label: str = ""
    num_blocks_label: str = ""
    block_size_gauge: bytes | None = None  # or plain gauges carrying it as their value
    num_blocks_gauge: bytes | None = None
    lora_info: bytes | None = None


_DIALECTS: dict[str, _Dialect] = {
    "vllm": _Dialect(
        waiting=(b"vllm:num_requests_waiting",),
        running=(b"vllm:num_requests_running",),
        kv_usage=(b"vllm:kv_cache_usage_perc", b"vllm:gpu_cache_usage_perc"),
        cache_info=b"vllm:cache_config_info",
        block_size_label="block_size",
        num_blocks_label="num_gpu_blocks",
        lora_info=b"vllm:lora_requests_info",
    ),
    # SGLang carried the cache shape as cache_config_info labels; newer versions export
    # sglang:page_size / sglang:num_pages gauges instead. Either is read.
    "sglang": _Dialect(
        waiting=(b"sglang:num_queue_reqs",),
        running=(b"sglang:num_running_reqs",),
        kv_usage=(b"sglang:token_usage",),
        cache_info=b"sglang:cache_config_info",
        block_size_label="page_size",
        num_blocks_label="num_pages",
        block_size_gauge=b"sglang:page_size",
        num_blocks_gauge=b"sglang:num_pages",
    ),
    "trtllm": _Dialect(
        waiting=(b"trtllm_num_requests_waiting",),
        running=(b"trtllm_num_requests_running",),
        kv_usage=(b"trtllm_kv_cache_utilization",),
        block_size_gauge=b"trtllm_kv_cache_tokens_per_block",
        num_blocks_gauge=b"trtllm_kv_cache_max_blocks",
    ),
}

# A label set: quoted values may hold any of `}` `,` `"` (escaped) and `\`.
_LABEL_SET = re.compile(rb'\{((?:[^"}]|"(?:[^"\\\n]|\\.)*")*)\}')
_LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_UNESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}
_NAME_END = frozenset(b"{ \t")


@dataclass(frozen=True, slots=True)
class _Sample:
    labels: bytes | None  # the raw text between the braces, undecoded
    value: float


def parse_metrics(text: bytes, engine: EngineName, now: float) -> ServerMetrics:
    """Read the scheduling signals of one ``/metrics`` page; ``now`` stamps ``scraped_at``.

    Raises ``MetricsParseError`` (never anything else) on malformed or incomplete input.
    """
    dialect = _DIALECTS.get(engine)
    if dialect is None:
        raise MetricsParseError(f"unknown engine {engine!r}; expected one of {sorted(ENGINES)}")
    page = b"\n" + text  # every sample line now starts after a newline
    waiting = _first_family(page, dialect.waiting)
    running = _first_family(page, dialect.running)
    kv_usage = _first_family(page, dialect.kv_usage)
    missing = [names[0].decode() for names, found in ((dialect.waiting, waiting),
                                                      (dialect.running, running),
                                                      (dialect.kv_usage, kv_usage)) if not found]
    if missing:
        raise MetricsParseError(
            f"no {', '.join(missing)} in the metrics page ({len(text)} bytes): "
            f"is the endpoint a {engine} server, and is its metrics path right?")
    block_size, num_blocks = _cache_shape(page, dialect)
    max_loras, running_loras, waiting_loras = _lora_info(page, dialect.lora_info)
    return ServerMetrics(
        waiting=_count(waiting),
        running=_count(running),
        kv_usage=_fraction(kv_usage),
        block_size=block_size,
        num_blocks=num_blocks,
        max_loras=max_loras,
        running_loras=running_loras,
        waiting_loras=waiting_loras,
        scraped_at=now,
    )


# -- aggregation -------------------------------------------------------------------------------

def _first_family(page: bytes, names: tuple[bytes, ...]) -> list[_Sample]:
    for name in names:
        samples = list(_samples(page, name))
        if samples:
            return samples
    return []


def _count(samples: list[_Sample]) -> int:
    total = 0.0
    for sample in samples:
        if not math.isfinite(sample.value):
            raise MetricsParseError(f"request count {sample.value} is not a finite number")
        total += max(sample.value, 0.0)
    return round(total)


def _fraction(samples: list[_Sample]) -> float:
    highest = 0.0
    for sample in samples:
        if not math.isfinite(sample.value):
            raise MetricsParseError(f"KV-cache usage {sample.value} is not a finite number")
        highest = max(highest, sample.value)
    return min(highest, 1.0)


def _cache_shape(page: bytes, dialect: _Dialect) -> tuple[int | None, int | None]:
    block_size = num_blocks = None
    if dialect.cache_info is not None:
        for sample in _samples(page, dialect.cache_info):
            block_size, num_blocks = _shape_labels(sample.labels, dialect.block_size_label,
                                                   dialect.num_blocks_label)
            break
    if block_size is None and dialect.block_size_gauge is not None:
        block_size = _gauge_int(page, dialect.block_size_gauge)
    if num_blocks is None and dialect.num_blocks_gauge is not None:
        num_blocks = _gauge_int(page, dialect.num_blocks_gauge)
    return block_size, num_blocks


def _lora_info(page: bytes, family: bytes | None
               ) -> tuple[int | None, frozenset[str], frozenset[str]]:
    current: _Sample | None = None
    if family is not None:
        for sample in _samples(page, family):
            # NaN never wins; equal stamps keep the later series, as vLLM appends the newest.
            if current is None or sample.value >= current.value or math.isnan(current.value):
                current = sample
    if current is None:
        return None, frozenset(), frozenset()
    return _lora_labels(current.labels)


# Info label sets repeat from scrape to scrape (and across replicas), so their reading is
# memoised on the raw bytes: a hit costs a hash instead of a parse.
@functools.lru_cache(maxsize=1024)
def _shape_labels(raw: bytes | None, block_size_label: str, num_blocks_label: str
                  ) -> tuple[int | None, int | None]:
    labels = _labels(raw)
    return (_positive_int(labels.get(block_size_label)),
            _positive_int(labels.get(num_blocks_label)))


@functools.lru_cache(maxsize=1024)
def _lora_labels(raw: bytes | None) -> tuple[int | None, frozenset[str], frozenset[str]]:
    labels = _labels(raw)
    return (_positive_int(labels.get("max_lora")),
            _adapters(labels.get("running_lora_adapters", "")),
            _adapters(labels.get("waiting_lora_adapters", "")))


def _gauge_int(page: bytes, name: bytes) -> int | None:
    for sample in _samples(page, name):
        value = sample.value
        return round(value) if math.isfinite(value) and value >= 1 else None
    return None


def _positive_int(text: str | None) -> int | None:
    # Info labels are free text: "None" (not yet profiled) or junk means unknown, not an error.
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 1 else None


def _adapters(text: str) -> frozenset[str]:
    return frozenset(name for part in text.split(",") if (name := part.strip()))


# -- exposition format -------------------------------------------------------------------------

def _samples(page: bytes, name: bytes) -> Iterator[_Sample]:
    """Every sample of the family ``name`` in ``page`` (which starts with a newline).

    The format keeps a family's lines together, so after the first series this only looks at
    the lines that follow instead of searching the rest of the page.
    """
    needle = b"\n" + name
    skip = len(needle)
    position = page.find(needle)
    while position >= 0:
        rest_at = position + skip
        end = page.find(b"\n", rest_at)
        if end < 0:
            end = len(page)
        # A longer name that merely starts with ours (name_total, name_bucket) is another family.
        if rest_at < len(page) and page[rest_at] in _NAME_END:
            yield _sample(name, page[rest_at:end])
            position = end if page.startswith(needle, end) else -1
        else:
            position = page.find(needle, end)


def _sample(name: bytes, rest: bytes) -> _Sample:
    """Parse ``{labels} value [timestamp]`` (everything after the metric name)."""
    labels: bytes | None = None
    tail = rest.lstrip(b" \t")
    if tail.startswith(b"{"):
        close = tail.find(b"}")
        candidate = tail[1:close]
        if close > 0 and b"\\" not in candidate and candidate.count(b'"') % 2 == 0:
            labels = candidate  # the common case: no escapes, so quotes pair up plainly
            tail = tail[close + 1:]
        else:
            match = _LABEL_SET.match(tail)
            if match is None:
                raise MetricsParseError(
                    f"{_show(name, rest)}: unterminated or malformed label set")
            labels = match.group(1)
            tail = tail[match.end():]
    fields = tail.split()
    # value, an optional timestamp, and (OpenMetrics) an optional "# {...} exemplar"
    if not fields or (len(fields) > 2 and fields[1] != b"#" and fields[2] != b"#"):
        raise MetricsParseError(f"{_show(name, rest)}: expected a value and an optional "
                                "timestamp after the metric name")
    try:
        value = float(fields[0])
        if len(fields) > 1 and fields[1] != b"#":
            float(fields[1])
    except ValueError:
        raise MetricsParseError(f"{_show(name, rest)}: not a number") from None
    return _Sample(labels, value)


def _labels(raw: bytes | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise MetricsParseError(f"label set {raw[:80]!r} is not UTF-8") from None
    if "\\" not in text:
        fast = _plain_labels(text)
        if fast is not None:
            return fast
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL_PAIR.match(text, position)
        if match is None:
            if text[position:].strip() == "":
                break
            raise MetricsParseError(f"malformed label set {{{text[:120]}}}")
        value = match.group(2)
        if "\\" in value:
            value = _UNESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), value)
        labels[match.group(1)] = value
        position = match.end()
    return labels


def _plain_labels(text: str) -> dict[str, str] | None:
    """Labels without escapes: values hold no quote, so ``",`` separates the pairs.

    None when the text is not of that simple shape (the regex parser then decides).
    """
    body = text.strip()
    if body.endswith(","):
        body = body[:-1].rstrip()
    if not body:
        return {}
    if not body.endswith('"'):
        return None
    labels: dict[str, str] = {}
    for part in body[:-1].split('",'):
        key, separator, value = part.partition('="')
        key = key.strip()
        if not separator or not key.isidentifier() or '"' in value:
            return None
        labels[key] = value
    return labels


def _show(name: bytes, rest: bytes) -> str:
    line = (name + rest).decode("utf-8", "replace")
    return repr(line if len(line) <= 120 else line[:117] + "...")

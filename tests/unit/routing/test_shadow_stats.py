"""Shadow comparison core: text similarity and per-pair statistics (no I/O)."""

from __future__ import annotations

import pytest

from inferlane.routing.shadow import (
    MAX_MODEL_NAME,
    MAX_TEXT,
    OTHER,
    Outcome,
    ShadowStats,
    percentile,
    similarity,
    statuses_agree,
)

OK = Outcome(status=200, latency=1.0)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param("the cat sat", "the cat sat", 1.0, id="identical"),
        pytest.param("", "", 1.0, id="both-empty"),
        pytest.param("", "the cat", 0.0, id="one-empty"),
        pytest.param("the cat", "", 0.0, id="other-empty"),
        pytest.param("red green", "blue yellow", 0.0, id="disjoint"),
        pytest.param("The Cat SAT", "the cat sat", 1.0, id="case-ignored"),
        pytest.param("the cat sat.", "the cat, sat", 1.0, id="punctuation-ignored"),
        # unigrams a b c match (3); bigrams "a b","b c" vs "c b","b a" do not: 3 / (3 + 4).
        pytest.param("a b c", "c b a", 3 / 7, id="reordered"),
        # a a b vs a b: unigrams min(2,1)+1 = 2, max 2+1 = 3; bigram "a b" 1/1, "a a" 0/1.
        pytest.param("a a b", "a b", 3 / 5, id="multiset-counts"),
        pytest.param("!!!", "???", 0.0, id="no-words-different"),
        pytest.param("!!!", "!!!", 1.0, id="no-words-identical"),
        pytest.param("   ", "", 0.0, id="whitespace-is-not-empty"),
    ],
)
def test_similarity(a: str, b: str, expected: float) -> None:
    assert similarity(a, b) == pytest.approx(expected)
    assert similarity(b, a) == pytest.approx(expected)  # symmetric


@pytest.mark.parametrize(
    ("a", "b"),
    [("the cat sat on the mat", "a dog sat on the mat"), ("x y z", "x"), ("one two", "two one")],
)
def test_similarity_partial_overlap_is_strictly_between(a: str, b: str) -> None:
    assert 0.0 < similarity(a, b) == similarity(b, a) < 1.0


def test_similarity_only_counts_the_first_max_text_chars() -> None:
    prefix = ("word " * MAX_TEXT)[:MAX_TEXT]
    assert similarity(prefix + "apples and pears", prefix + "completely different") == 1.0
    assert similarity(prefix + "tail", prefix) == 1.0


def test_similarity_is_fast_on_long_texts() -> None:
    # Would take seconds with a quadratic matcher; O(n) takes milliseconds.
    a = " ".join(f"w{i % 997}" for i in range(5000))[:MAX_TEXT]
    b = " ".join(f"w{i % 991}" for i in range(5000))[:MAX_TEXT]
    assert 0.0 < similarity(a, b) < 1.0


@pytest.mark.parametrize(
    ("primary", "shadow", "agree"),
    [(200, 201, True), (200, 500, False), (429, 429, True), (0, 0, True), (0, 200, False),
     (404, 400, False)],
)
def test_statuses_agree(primary: int, shadow: int, agree: bool) -> None:
    assert statuses_agree(Outcome(primary, 1.0), Outcome(shadow, 1.0)) is agree


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 50, None), ([3.0], 90, 3.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
     ([float(i) for i in range(1, 11)], 90, 9.0), ([5.0, 1.0, 3.0], 0, 1.0),
     ([5.0, 1.0, 3.0], 100, 5.0)],
)
def test_percentile_nearest_rank(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


def test_empty_stats_summary() -> None:
    assert ShadowStats().summary() == []


@pytest.mark.parametrize(("max_pairs", "reservoir"), [(0, 10), (10, 0)])
def test_stats_rejects_nonpositive_bounds(max_pairs: int, reservoir: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ShadowStats(max_pairs=max_pairs, reservoir=reservoir)


def test_stats_counts_agreement_and_summary() -> None:
    stats = ShadowStats()
    for _ in range(4):
        stats.mirrored("big", "small")
    stats.dropped("big", "small", "timeout")
    score = stats.compared(
        "big", "small",
        Outcome(200, 1.0, ttft=0.1, output_tokens=10, text="the cat sat"),
        Outcome(200, 2.0, ttft=0.3, output_tokens=20, text="the cat sat"),
    )
    assert score == 1.0
    stats.compared(
        "big", "small",
        Outcome(200, 3.0, ttft=None, output_tokens=None, text="a b c"),
        Outcome(201, 4.0, ttft=0.5, output_tokens=30, text="c b a"),
    )
    # Not a sample: only counts and agreement are recorded, the similarity is still returned.
    assert stats.compared("big", "small", Outcome(200, 9.0, text="x"),
                          Outcome(500, 0.01, text="x")) == 1.0

    [pair] = stats.summary()
    assert pair == {
        "primary_model": "big",
        "shadow_model": "small",
        "mirrored": 4,
        "compared": 3,
        "dropped": {"overloaded": 0, "timeout": 1, "error": 0},
        "status_agreement": pytest.approx(2 / 3),
        "samples": 2,
        "primary": {
            "success_rate": 1.0,
            "latency_p50": 1.0,
            "latency_p90": 3.0,
            "ttft_p50": 0.1,
            "output_tokens_mean": 10.0,
        },
        "shadow": {
            "success_rate": pytest.approx(2 / 3),
            "latency_p50": 2.0,
            "latency_p90": 4.0,
            "ttft_p50": 0.3,
            "output_tokens_mean": 25.0,
        },
        "similarity_mean": pytest.approx((1.0 + 3 / 7) / 2),
        "similarity_p50": pytest.approx(3 / 7),
    }


def test_stats_pair_without_comparisons_has_none_ratios() -> None:
    stats = ShadowStats()
    stats.mirrored("a", "b")
    stats.dropped("a", "b", "overloaded")
    stats.dropped("a", "b", "error")
    [pair] = stats.summary()
    assert pair["compared"] == 0
    assert pair["dropped"] == {"overloaded": 1, "timeout": 0, "error": 1}
    assert pair["status_agreement"] is None
    assert pair["samples"] == 0
    assert pair["similarity_mean"] is None
    assert pair["similarity_p50"] is None
    assert pair["primary"] == {"success_rate": None, "latency_p50": None, "latency_p90": None,
                               "ttft_p50": None, "output_tokens_mean": None}


def test_stats_rejects_unknown_drop_reason() -> None:
    with pytest.raises(ValueError, match="unknown reason 'sampled-out'"):
        ShadowStats().dropped("a", "b", "sampled-out")  # type: ignore[arg-type]


def test_stats_windows_are_bounded_counts_are_not() -> None:
    stats = ShadowStats(reservoir=3)
    for i in range(10):
        stats.compared("a", "b", Outcome(200, float(i), ttft=float(i), output_tokens=i),
                       Outcome(200, float(i), ttft=float(i), output_tokens=i))
    [pair] = stats.summary()
    assert pair["compared"] == 10
    assert pair["samples"] == 3
    assert pair["primary"]["success_rate"] == 1.0
    assert pair["primary"]["latency_p50"] == 8.0  # window holds 7, 8, 9
    assert pair["shadow"]["ttft_p50"] == 8.0
    assert pair["shadow"]["output_tokens_mean"] == 8.0


def test_stats_pairs_sorted_and_separate() -> None:
    stats = ShadowStats()
    stats.mirrored("b", "x")
    stats.mirrored("a", "y")
    stats.mirrored("a", "x")
    stats.mirrored("a", "x")
    summary = stats.summary()
    assert [(p["primary_model"], p["shadow_model"], p["mirrored"]) for p in summary] == [
        ("a", "x", 2), ("a", "y", 1), ("b", "x", 1)]


def test_stats_folds_pairs_past_the_cap_into_other() -> None:
    stats = ShadowStats(max_pairs=2)
    stats.mirrored("m1", "s")
    stats.mirrored("m2", "s")
    for i in range(3, 50):
        stats.mirrored(f"m{i}", "s")
        stats.compared(f"m{i}", "s", OK, OK)
    stats.mirrored("m1", "s")  # known pairs keep their own row
    summary = {(p["primary_model"], p["shadow_model"]): p for p in stats.summary()}
    assert set(summary) == {("m1", "s"), ("m2", "s"), (OTHER, OTHER)}
    assert summary[("m1", "s")]["mirrored"] == 2
    assert summary[(OTHER, OTHER)]["mirrored"] == 47
    assert summary[(OTHER, OTHER)]["compared"] == 47


def test_stats_truncates_long_model_names() -> None:
    stats = ShadowStats(max_pairs=1)
    stats.mirrored("p" * 10_000, "s" * 10_000)
    stats.mirrored("p" * 5_000, "s" * 300)  # same pair once truncated: not folded
    [pair] = stats.summary()
    assert pair["primary_model"] == "p" * MAX_MODEL_NAME
    assert pair["shadow_model"] == "s" * MAX_MODEL_NAME
    assert pair["mirrored"] == 2

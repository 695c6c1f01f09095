import random
from collections import Counter

import pytest

from inferlane.routing.rewrite import ModelRewriteTable, RewriteRule
from inferlane.routing.split import WeightedChoice


@pytest.mark.parametrize(
    ("pairs", "unit", "expected"),
    [
        ([("a", 1)], 0.99, "a"),
        ([("a", 90), ("b", 10)], 0.0, "a"),
        ([("a", 90), ("b", 10)], 0.8999, "a"),
        ([("a", 90), ("b", 10)], 0.9, "b"),
        ([("a", 0), ("b", 5)], 0.0, "b"),
        ([("a", 1), ("b", 1), ("c", 2)], 0.5, "c"),
    ],
)
def test_weighted_choice_boundaries(pairs: list[tuple[str, int]], unit: float,
                                    expected: str) -> None:
    assert WeightedChoice.of(pairs).choose(unit) == expected


def test_zero_weights_leave_nothing_to_choose() -> None:
    choice = WeightedChoice.of([("a", 0), ("b", 0)])
    assert choice.empty
    with pytest.raises(IndexError):
        choice.choose(0.5)


def test_weighted_choice_distribution_follows_weights() -> None:
    choice = WeightedChoice.of([("a", 70), ("b", 20), ("c", 10)])
    rng = random.Random(1)
    counts = Counter(choice.choose(rng.random()) for _ in range(20_000))
    assert choice.share("a") == pytest.approx(0.7)
    for item, weight in (("a", 0.7), ("b", 0.2), ("c", 0.1)):
        assert counts[item] / 20_000 == pytest.approx(weight, abs=0.015)


def canary(models: tuple[str, ...], *targets: tuple[str, int]) -> RewriteRule:
    return RewriteRule(models=models, targets=WeightedChoice.of(list(targets)))


def test_exact_rewrite_beats_generic_and_first_wins() -> None:
    table = ModelRewriteTable.build([
        canary((), ("generic-target", 1)),
        canary(("llama",), ("llama-v2", 1)),
        canary(("llama",), ("ignored-newer", 1)),
    ])
    assert table.rewrite("llama", 0.3) == "llama-v2"
    assert table.rewrite("anything-else", 0.3) == "generic-target"
    assert table.source_models() == ("llama",)


def test_no_rewrite_keeps_model() -> None:
    table = ModelRewriteTable.build([canary(("llama",), ("llama-v2", 1))])
    assert table.rewrite("qwen", 0.5) == "qwen"


def test_canary_split_is_weighted() -> None:
    table = ModelRewriteTable.build([canary(("m",), ("stable", 90), ("lora", 10))])
    rng = random.Random(3)
    counts = Counter(table.rewrite("m", rng.random()) for _ in range(10_000))
    assert counts["lora"] / 10_000 == pytest.approx(0.10, abs=0.015)

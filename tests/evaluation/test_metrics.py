"""Pure metrics and parsers on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from limakit.evaluation import metrics
from limakit.evaluation.prompts import get_prompt


@pytest.mark.parametrize(
    ("first", "second", "result", "consistent"),
    [
        ("A", "B", "win", True),  # A first then A second (shown as B): A both times
        ("B", "A", "lose", True),
        ("A", "A", "tie", False),  # always the first position: position bias
        ("B", "B", "tie", False),
        ("C", "C", "tie", True),
        ("A", "C", "tie", False),
    ],
)
def test_outcome_needs_both_orders(first, second, result, consistent):
    assert metrics.outcome(first, second) == result
    assert metrics.consistent(first, second) is consistent


def test_fractions_and_intervals_hand_computed():
    stats = metrics.pairwise_stats(["win"] * 6 + ["tie"] * 2 + ["lose"] * 2, resamples=2000)
    assert (stats["win"], stats["tie"], stats["lose"], stats["n"]) == (0.6, 0.2, 0.2, 10)
    # Every resample of an all-wins list is all wins: the interval collapses.
    assert metrics.bootstrap_ci([1, 1, 1, 1]) == [1.0, 1.0]
    # Two outcomes {0, 1}: resampled means are 0, .5, 1 with chances 1/4, 1/2, 1/4.
    assert metrics.bootstrap_ci([0, 1], resamples=4000) == [0.0, 1.0]
    lo, hi = stats["win_ci"]
    assert lo < 0.6 < hi and 0 <= lo and hi <= 1


def test_bootstrap_matches_normal_approximation_for_large_n():
    x = [1] * 300 + [0] * 700  # p = 0.3, se = sqrt(.3 * .7 / 1000) = 0.0145
    lo, hi = metrics.bootstrap_ci(x, resamples=4000, seed=1)
    se = np.sqrt(0.3 * 0.7 / 1000)
    assert lo == pytest.approx(0.3 - 1.96 * se, abs=0.006)
    assert hi == pytest.approx(0.3 + 1.96 * se, abs=0.006)


def test_length_bias_counts_decided_pairs_with_different_lengths():
    rows = [("win", 100, 10), ("win", 100, 10), ("lose", 100, 10), ("win", 5, 50), ("tie", 1, 9)]
    lb = metrics.length_bias(rows)
    assert lb == {"longer_won": 0.5, "decided": 4}


def test_mean_with_ci_resamples_prompts():
    r = metrics.mean_with_ci({"p1": [6, 6, 6, 6, 6], "p2": [2]}, resamples=4000)
    assert r["mean"] == 4.0 and r["prompts"] == 2 and r["n"] == 6
    assert r["mean_ci"] == [2.0, 6.0]  # prompt means {6, 2}: resampled means 2, 4, 6


def test_rating_parsers():
    assert get_prompt("rate").parse("Solid.\n[[Excellent]]") == "Excellent"
    assert get_prompt("rate").parse("[[Good]]") is None
    assert get_prompt("likert").parse("Rating: [[6]]") == "6"
    assert get_prompt("likert").parse("[[7]]") is None
    assert get_prompt("likert").parse("Rating: 3/6") == "3"


def test_prompts_fill_without_format_surprises():
    p = get_prompt("pairwise")
    msgs = p.messages("Q {x}?", "uses {answer_b} literally", "B")
    user = msgs[-1]["content"]
    assert "Q {x}?" in user and "uses {answer_b} literally" in user
    assert p.version.startswith("lima-pair-v1@")
    mt = get_prompt("pairwise", "mt-bench-pair-v2")
    assert "[[A]]" in mt.system and "{question}" in mt.user

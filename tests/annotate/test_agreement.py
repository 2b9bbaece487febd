"""Agreement measures on cases computed by hand."""

from __future__ import annotations

import pytest

from limakit.evaluation.agreement import (
    against_judge,
    between_annotators,
    cohen_kappa,
    majority,
    tie_discounted,
)


@pytest.mark.parametrize(
    ("x", "y", "score"),
    [("a", "a", 1.0), ("tie", "tie", 1.0), ("a", "tie", 0.5), ("tie", "b", 0.5), ("a", "b", 0.0)],
)
def test_tie_discounted_scores(x, y, score):
    assert tie_discounted(x, y) == score


def test_cohen_kappa_by_hand():
    # 10 items: both say a on 4, both b on 3, a/b on 2, b/a on 1
    pairs = [("a", "a")] * 4 + [("b", "b")] * 3 + [("a", "b")] * 2 + [("b", "a")]
    # p_o = 0.7; rater 1: a 6, b 4; rater 2: a 5, b 5; p_e = (30 + 20) / 100 = 0.5
    assert cohen_kappa(pairs) == pytest.approx((0.7 - 0.5) / 0.5)
    assert cohen_kappa([("a", "b"), ("b", "a")]) == pytest.approx(-1.0)
    assert cohen_kappa([("tie", "tie")] * 3) == 1.0  # chance agreement 1: taken as perfect
    assert cohen_kappa([]) is None


def test_majority_splits_are_ties():
    assert majority(["a", "b", "b"]) == "b"
    assert majority(["a", "b", "tie"]) == "tie"
    assert majority(["tie", "tie", "a"]) == "tie"
    assert majority(["a"]) == "a"


def test_between_annotators_pools_every_pair_of_people():
    labels = {
        "p1": {"ann": "a", "bo": "a", "cy": "b"},  # pairs: ann-bo 1, ann-cy 0, bo-cy 0
        "p2": {"ann": "tie", "bo": "a"},  # ann-bo 0.5
        "p3": {"ann": "b"},  # nobody to compare with
    }
    out = between_annotators(labels, resamples=200)
    assert out["items"] == 2 and out["comparisons"] == 4 and out["annotators"] == 3
    assert out["accuracy"] == pytest.approx(1.5 / 4)
    assert out["exact"] == pytest.approx(1 / 4)
    # pooled pairs (ann,bo),(ann,cy),(bo,cy),(ann,bo): (a,a),(a,b),(a,b),(tie,a)
    # first: a 3, tie 1; second: a 2, b 2; p_o 1/4; p_e 3*2/16 = 6/16
    assert out["kappa"] == pytest.approx((0.25 - 0.375) / (1 - 0.375))
    lo, hi = out["accuracy_ci"]
    assert 0.0 <= lo <= out["accuracy"] <= hi <= 1.0
    by_pair = {tuple(p["annotators"]): p for p in out["pairs"]}
    assert by_pair[("ann", "bo")]["items"] == 2
    assert by_pair[("ann", "bo")]["accuracy"] == pytest.approx(0.75)
    assert by_pair[("bo", "cy")]["accuracy"] == 0.0


def test_against_judge_uses_the_majority_and_counts_the_rest():
    labels = {
        "p1": {"x": "a", "y": "a", "z": "b"},  # majority a; judge a -> 1
        "p2": {"x": "a", "y": "b"},  # split -> tie; judge b -> 0.5
        "p3": {"x": "b"},  # judge a -> 0
        "p4": {"x": "a"},  # judge never saw it
    }
    judge = {"p1": "a", "p2": "b", "p3": "a", "p9": "tie"}
    out = against_judge(labels, judge, resamples=200)
    assert out["items"] == 3 and out["comparisons"] == 3
    assert out["accuracy"] == pytest.approx(1.5 / 3)
    assert out["only_people"] == 1 and out["only_judge"] == 1
    # majority (a, tie, b) vs judge (a, b, a): p_o 1/3; p_e = (1*2 + 1*1) / 9
    assert out["kappa"] == pytest.approx((1 / 3 - 3 / 9) / (1 - 3 / 9))


def test_perfect_agreement_has_a_point_interval():
    labels = {f"p{i}": {"x": lab, "y": lab} for i, lab in enumerate("ab" * 10)}
    out = between_annotators(labels, resamples=300)
    assert out["accuracy"] == 1.0 and out["accuracy_ci"] == [1.0, 1.0]
    assert out["kappa"] == 1.0

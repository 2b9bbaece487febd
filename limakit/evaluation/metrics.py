"""Pure metrics: pairwise outcomes, win/tie/lose fractions, bootstrap 95% intervals, length bias.

>>> outcome("A", "B")   # A preferred in the first order, and again after swapping (B = A's answer)
'win'
>>> outcome("A", "A")   # the judge picked whatever came first: position bias, counted as a tie
'tie'
>>> round(fractions(["win", "win", "tie", "lose"])["win"], 2)
0.5
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from typing_extensions import TypedDict

RESULTS = ("win", "tie", "lose")
SCORE = {"win": 1.0, "tie": 0.5, "lose": 0.0}  # a tie is worth half a win


def prefer(label: str, swapped: bool) -> str:
    """Map a position verdict (A/B/C) to which *model* it favours: 'a', 'b' or 'tie'."""
    if label == "C":
        return "tie"
    first_is_a = not swapped
    return "a" if (label == "A") == first_is_a else "b"


def outcome(first: str, second: str) -> str:
    """Result for model A from the verdict in order (A, B) and the verdict in order (B, A).

    Both orders must agree for a win or a loss; a disagreement or a "neither" is a tie.
    """
    p1, p2 = prefer(first, swapped=False), prefer(second, swapped=True)
    if p1 == p2 == "a":
        return "win"
    if p1 == p2 == "b":
        return "lose"
    return "tie"


def consistent(first: str, second: str) -> bool:
    """True when the judge preferred the same *answer* in both orders (ties included)."""
    return prefer(first, swapped=False) == prefer(second, swapped=True)


def fractions(results: Sequence[str]) -> dict[str, float]:
    n = len(results)
    return {r: (sum(x == r for x in results) / n if n else 0.0) for r in RESULTS}


def bootstrap_ci(
    values: Sequence[float], *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> list[float]:
    """Percentile bootstrap interval of the mean.

    >>> bootstrap_ci([1, 1, 1])
    [1.0, 1.0]
    >>> bootstrap_ci([0, 1], resamples=4000)   # means 0, .5, 1 with chances 1/4, 1/2, 1/4
    [0.0, 1.0]
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return [0.0, 0.0]
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return [round(float(lo), 6), round(float(hi), 6)]


class Measure(TypedDict):
    """A share or a mean over prompts with its 95% bootstrap interval: the shape of every
    judge-free measure (``ends_turn``, ``stays_in_role``, ``refusal``, ``unshifted``...)."""

    value: float | None
    ci: list[float] | None
    n: int


def measure(values: Sequence[float | bool], *, resamples: int = 1000, seed: int = 0) -> Measure:
    """The mean of ``values`` (booleans give a share) with its percentile bootstrap interval.

    >>> measure([True, True, False, True])["value"]
    0.75
    >>> measure([])
    {'value': None, 'ci': None, 'n': 0}
    """
    if not len(values):
        return {"value": None, "ci": None, "n": 0}
    x = [float(v) for v in values]
    return {
        "value": round(float(np.mean(x)), 6),
        "ci": bootstrap_ci(x, resamples=resamples, seed=seed),
        "n": len(x),
    }


class PairwiseStats(TypedDict):
    """Win / tie / lose shares of the first model over ``n`` judged pairs, each with its 95%
    interval, and ``score`` = win + tie/2 with its interval."""

    n: int
    win: float
    win_ci: list[float]
    tie: float
    tie_ci: list[float]
    lose: float
    lose_ci: list[float]
    score: float
    score_ci: list[float]


def pairwise_stats(
    results: Sequence[str], *, resamples: int = 1000, seed: int = 0
) -> PairwiseStats:
    """Win/tie/lose fractions for A with bootstrap intervals (each from the same resamples), and
    ``score`` = win + tie / 2 (AlpacaEval's win rate, a tie worth half a win) with its interval.

    >>> s = pairwise_stats(["win", "tie", "lose", "win"])
    >>> s["score"], s["win"] + s["tie"] / 2
    (0.625, 0.625)
    """
    share = fractions(results)

    def ci(r: str) -> list[float]:
        return bootstrap_ci([x == r for x in results], resamples=resamples, seed=seed)

    values = [SCORE[x] for x in results]
    return {
        "n": len(results),
        "win": round(share["win"], 6),
        "win_ci": ci("win"),
        "tie": round(share["tie"], 6),
        "tie_ci": ci("tie"),
        "lose": round(share["lose"], 6),
        "lose_ci": ci("lose"),
        "score": round(float(np.mean(values)), 6) if values else 0.0,
        "score_ci": bootstrap_ci(values, resamples=resamples, seed=seed),
    }


class LengthBias(TypedDict):
    """How often the longer answer won among the ``decided`` pairs (None without any)."""

    longer_won: float | None
    decided: int


def length_bias(rows: Sequence[tuple[str, int, int]]) -> LengthBias:
    """How often the longer answer won, among decided pairs whose lengths differ.

    ``rows`` holds (result for A, length of A, length of B).

    >>> length_bias([("win", 10, 5), ("lose", 10, 5), ("win", 3, 9), ("tie", 1, 2)])["longer_won"]
    0.333333
    """
    decided = [(r, la, lb) for r, la, lb in rows if r != "tie" and la != lb]
    if not decided:
        return {"longer_won": None, "decided": 0}
    longer = sum((r == "win") == (la > lb) for r, la, lb in decided)
    return {"longer_won": round(longer / len(decided), 6), "decided": len(decided)}


class MeanScore(TypedDict):
    """A mean score over ``prompts`` prompts (``n`` scores) with its 95% interval; None without
    any score."""

    mean: float | None
    mean_ci: list[float] | None
    prompts: int
    n: int


def mean_with_ci(
    groups: Mapping[str, list[float]], *, resamples: int = 1000, seed: int = 0
) -> MeanScore:
    """Mean score with a 95% interval, resampling *prompts* (each prompt's samples stay together).

    Samples of one prompt are correlated; resampling prompts keeps the interval honest.

    >>> mean_with_ci({"p1": [4, 6], "p2": [2]})["mean"]
    3.5
    """
    per_prompt = [float(np.mean(v)) for v in groups.values() if v]
    if not per_prompt:
        return {"mean": None, "mean_ci": None, "prompts": 0, "n": 0}
    return {
        "mean": round(float(np.mean(per_prompt)), 6),
        "mean_ci": bootstrap_ci(per_prompt, resamples=resamples, seed=seed),
        "prompts": len(per_prompt),
        "n": sum(len(v) for v in groups.values()),
    }

"""Agreement between raters of pairwise comparisons: people with each other, people with a judge.

A rater's label for one comparison is which model it prefers: ``"a"``, ``"b"`` or ``"tie"``. The
LIMA paper measures agreement as *tie-discounted accuracy*: a full point when two labels match,
half a point when exactly one of them is a tie, nothing when one prefers A and the other B.
Cohen's kappa is reported beside it, since raw agreement is high by chance when one label
dominates. Intervals resample *items* (a prompt and sample), so the several annotator pairs of
one item stay together.

>>> tie_discounted("a", "a"), tie_discounted("a", "tie"), tie_discounted("a", "b")
(1.0, 0.5, 0.0)
>>> round(cohen_kappa([("a", "a"), ("b", "b"), ("a", "b"), ("tie", "tie")]), 3)
0.636
>>> majority(["a", "a", "b"]), majority(["a", "b"])
('a', 'tie')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from itertools import combinations

import numpy as np

LABELS = ("a", "b", "tie")
RESULT_TO_LABEL = {"win": "a", "lose": "b", "tie": "tie"}


def tie_discounted(x: str, y: str) -> float:
    """1 when the labels match, 0.5 when exactly one is a tie, 0 otherwise."""
    if x == y:
        return 1.0
    if x == "tie" or y == "tie":
        return 0.5
    return 0.0


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters over the same items; None when undefined (no items).

    ``(p_o - p_e) / (1 - p_e)``, with ``p_e`` from each rater's own label frequencies. When both
    raters always give one and the same label, chance agreement is 1 and kappa is taken as 1.
    """
    if not pairs:
        return None
    n = len(pairs)
    first = Counter(x for x, _ in pairs)
    second = Counter(y for _, y in pairs)
    p_o = sum(x == y for x, y in pairs) / n
    p_e = sum(first[k] * second[k] for k in first) / (n * n)
    if p_e >= 1.0:
        return 1.0
    return (p_o - p_e) / (1.0 - p_e)


def majority(labels: Sequence[str]) -> str:
    """The label most annotators gave; a tie between the top labels counts as ``"tie"``."""
    counts = Counter(labels).most_common()
    if not counts:
        raise ValueError("majority of no labels")
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return "tie"
    return counts[0][0]


def _interval(stat, n: int, resamples: int, seed: int) -> list[float] | None:
    """Percentile bootstrap 95% interval of ``stat(indices)`` over resampled item indices."""
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        v = stat(rng.integers(0, n, size=n))
        if v is not None:
            values.append(v)
    if not values:
        return None
    lo, hi = np.quantile(values, [0.025, 0.975])
    return [round(float(lo), 6), round(float(hi), 6)]


def _summary(items: list[list[tuple[str, str]]], resamples: int, seed: int) -> dict:
    """Accuracy and kappa over items, each holding one or more (label, label) comparisons."""

    def pooled(idx) -> list[tuple[str, str]]:
        return [pair for i in idx for pair in items[i]]

    def accuracy(idx) -> float | None:
        pairs = pooled(idx)
        return sum(tie_discounted(x, y) for x, y in pairs) / len(pairs) if pairs else None

    def kappa(idx) -> float | None:
        return cohen_kappa(pooled(idx))

    everything = range(len(items))
    acc, kap = accuracy(everything), kappa(everything)
    return {
        "items": len(items),
        "comparisons": sum(len(x) for x in items),
        "exact": _round(
            sum(x == y for it in items for x, y in it) / max(1, sum(len(x) for x in items))
        ),
        "accuracy": _round(acc),
        "accuracy_ci": _interval(accuracy, len(items), resamples, seed),
        "kappa": _round(kap),
        "kappa_ci": _interval(kappa, len(items), resamples, seed),
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def between_annotators(
    labels: Mapping[Hashable, Mapping[str, str]], *, resamples: int = 1000, seed: int = 0
) -> dict:
    """Agreement among annotators: every pair of annotators on every item both labelled.

    ``labels`` maps an item to ``{annotator: label}``. Accuracy pools all annotator pairs; kappa
    is Cohen's on the pooled pairs, each pair ordered by annotator name. ``pairs`` lists each
    pair of annotators with its own counts, accuracy and kappa.

    >>> between_annotators({"p1": {"ann": "a", "bo": "a"}, "p2": {"ann": "b", "bo": "tie"}},
    ...                    resamples=10)["accuracy"]
    0.75
    """
    items = []
    per_pair: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for by_annotator in labels.values():
        comparisons = []
        for u, v in combinations(sorted(by_annotator), 2):
            pair = (by_annotator[u], by_annotator[v])
            comparisons.append(pair)
            per_pair.setdefault((u, v), []).append(pair)
        if comparisons:
            items.append(comparisons)
    out = _summary(items, resamples, seed)
    out["annotators"] = len({a for by in labels.values() for a in by})
    out["pairs"] = [
        {
            "annotators": [u, v],
            "items": len(pairs),
            "accuracy": _round(sum(tie_discounted(x, y) for x, y in pairs) / len(pairs)),
            "kappa": _round(cohen_kappa(pairs)),
        }
        for (u, v), pairs in sorted(per_pair.items())
    ]
    return out


def against_judge(
    labels: Mapping[Hashable, Mapping[str, str]],
    judge: Mapping[Hashable, str],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Agreement between the annotators' majority label and a judge, on items both labelled.

    ``labels`` maps an item to ``{annotator: label}``; ``judge`` maps an item to its label.

    >>> against_judge({"p1": {"x": "a", "y": "a"}, "p2": {"x": "b"}}, {"p1": "a", "p2": "tie"},
    ...               resamples=10)["accuracy"]
    0.75
    """
    items = [
        [(majority(list(by.values())), judge[key])]
        for key, by in labels.items()
        if by and key in judge
    ]
    out = _summary(items, resamples, seed)
    out["only_people"] = sum(1 for key, by in labels.items() if by and key not in judge)
    out["only_judge"] = sum(1 for key in judge if key not in labels or not labels[key])
    return out

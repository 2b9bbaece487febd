"""Diversity-aware sampling, seeded and reproducible.

- :func:`temperature_sample`: LIMA's exchange sampling. Each draw picks a group (an exchange) with
  P proportional to size^(1/tau) among groups with examples left, then takes that group's best
  remaining example. tau=1 is proportional to size; larger tau flattens towards uniform.
- :func:`category_sample`: wikiHow's two stages: a category uniformly, then an article in it.
- :func:`allocate`: split a total over buckets in proportion to their quotas.

>>> import random
>>> groups = {"big": [3, 2, 1], "small": [9]}
>>> temperature_sample(groups, {"big": 1000, "small": 1}, 2, tau=3.0, rng=random.Random(0))
[3, 2]
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def temperature_weights(sizes: dict[str, float], tau: float) -> dict[str, float]:
    """Normalised P(group) proportional to size^(1/tau)."""
    if tau <= 0:
        raise ValueError("tau must be positive")
    raw = {g: max(float(s), 0.0) ** (1.0 / tau) for g, s in sizes.items()}
    total = sum(raw.values())
    return {g: (w / total if total else 0.0) for g, w in raw.items()}


def temperature_sample(
    groups: dict[str, Sequence[T]],
    sizes: dict[str, float],
    k: int,
    *,
    tau: float = 3.0,
    rng: random.Random,
) -> list[T]:
    """Draw ``k`` items: group by temperature, then the group's next item (lists are best-first)."""
    from limakit.curation.draw import TemperatureDrawer

    return TemperatureDrawer(groups, sizes, tau, rng).draw(k)


def category_sample(groups: dict[str, Sequence[T]], k: int, *, rng: random.Random) -> list[T]:
    """Draw ``k`` items: a category uniformly among those with items left, then a random item."""
    from limakit.curation.draw import CategoryDrawer

    return CategoryDrawer(groups, rng).draw(k)


def allocate(total: int, quotas: dict[str, int], available: dict[str, int]) -> dict[str, int]:
    """Share ``total`` over buckets proportionally to ``quotas``; a bucket's shortfall (fewer
    examples than its share) goes to the others, still in proportion (largest remainder).

    >>> allocate(10, {"a": 200, "b": 200, "c": 100}, {"a": 100, "b": 1, "c": 100})
    {'a': 6, 'b': 1, 'c': 3}
    """
    share = {b: 0 for b in quotas}
    left = total
    open_ = [b for b in quotas if quotas[b] > 0 and available.get(b, 0) > 0]
    while left > 0 and open_:
        weight = sum(quotas[b] for b in open_)
        exact = {b: left * quotas[b] / weight for b in open_}
        give = {b: int(exact[b]) for b in open_}
        rest = left - sum(give.values())
        for b in sorted(open_, key=lambda b: (-(exact[b] - give[b]), b))[:rest]:
            give[b] += 1
        for b in open_:
            give[b] = min(give[b], available[b] - share[b])
            share[b] += give[b]
        left = total - sum(share.values())
        nxt = [b for b in open_ if share[b] < available[b]]
        if nxt == open_ and sum(give.values()) == 0:
            break
        open_ = nxt
    return share

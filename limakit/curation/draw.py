"""Drawers: stateful samplers, one per bucket, so a shortfall can be topped up in later rounds.

Each drawer yields examples in its bucket's paper order with ``draw(k)``; ``remaining`` is an
upper bound of what it can still give. Stack Exchange pairs are turned into examples (cleaned,
checked) only when drawn, by the ``make`` callback, which returns None for a rejected pair.

>>> d = ListDrawer(["a", "b", "c"])
>>> d.draw(2), d.draw(5), d.remaining
(['a', 'b'], ['c'], 0)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any


class ListDrawer:
    """Items in the given order (ranked or pre-shuffled)."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items, self.cursor = list(items), 0

    @property
    def remaining(self) -> int:
        return len(self.items) - self.cursor

    def draw(self, k: int) -> list:
        out = self.items[self.cursor : self.cursor + max(k, 0)]
        self.cursor += len(out)
        return out


class CategoryDrawer:
    """wikiHow: a category uniformly among those with articles left, then a random article."""

    def __init__(self, groups: dict[str, Sequence[Any]], rng: random.Random) -> None:
        self.pools = {g: list(v) for g, v in groups.items() if v}
        self.rng = rng

    @property
    def remaining(self) -> int:
        return sum(len(v) for v in self.pools.values())

    def draw(self, k: int) -> list:
        out = []
        while len(out) < k and self.pools:
            g = self.rng.choice(sorted(self.pools))
            items = self.pools[g]
            out.append(items.pop(self.rng.randrange(len(items))))
            if not items:
                del self.pools[g]
        return out


class TemperatureDrawer:
    """Stack Exchange: an exchange with P ~ size^(1/tau), then its best remaining acceptable pair.

    A rejected pair (``make`` returns None) does not cost the exchange its draw: the next pair
    of the same exchange is tried, so exchange proportions follow tau whatever the rules reject.
    """

    def __init__(
        self,
        groups: dict[str, Sequence[Any]],
        sizes: dict[str, float],
        tau: float,
        rng: random.Random,
        make: Callable[[Any], Any | None] = lambda x: x,
    ) -> None:
        self.groups = {g: list(v) for g, v in groups.items()}
        self.cursor = {g: 0 for g in self.groups}
        self.sizes, self.tau, self.rng, self.make = sizes, tau, rng, make
        self.examined = 0

    @property
    def remaining(self) -> int:
        return sum(len(v) - self.cursor[g] for g, v in self.groups.items())

    def draw(self, k: int) -> list:
        out = []
        while len(out) < k:
            live = [g for g in sorted(self.groups) if self.cursor[g] < len(self.groups[g])]
            if not live:
                break
            weights = [
                max(float(self.sizes.get(g, len(self.groups[g]))), 0.0) ** (1 / self.tau)
                for g in live
            ]
            if sum(weights) <= 0:
                weights = [1.0] * len(live)
            g = self.rng.choices(live, weights=weights)[0]
            while self.cursor[g] < len(self.groups[g]):
                item = self.groups[g][self.cursor[g]]
                self.cursor[g] += 1
                self.examined += 1
                made = self.make(item)
                if made is not None:
                    out.append(made)
                    break
        return out

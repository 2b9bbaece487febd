"""``curate(config)``: sources -> rules -> dedup -> decontamination -> sampling -> outputs.

Outputs in ``config.out`` (each written atomically): ``examples.jsonl``, ``rejected.jsonl`` (every
rejection with its ``rule`` and ``reason``), ``card.md`` with ``length_hist.png``, ``config.yaml``
and, with ``splits``, ``dev.jsonl`` and ``test.jsonl``.

>>> summary = curate(CurateConfig(wikihow=["wikihowAll.csv"], n=100, out="curated"))  # doctest: +SKIP
>>> summary["examples"]  # doctest: +SKIP
100
"""

from __future__ import annotations

import contextlib
import random
from collections import defaultdict
from pathlib import Path

from limakit.curation.config import CurateConfig
from limakit.curation.dedup import Decontaminator, deduplicate
from limakit.curation.gather import (
    Funnel,
    gather_manual,
    gather_pool,
    gather_reddit,
    gather_sni,
    gather_stackexchange,
    gather_wikihow,
)
from limakit.curation.sampling import allocate, category_sample, temperature_sample
from limakit.errors import LimaError
from limakit.example import Example, write_examples
from limakit.files import atomic_write

# Dedup keeps the first of a pair, so the more trusted sources come first.
PRIORITY = [
    "manual",
    "natural_instructions",
    "wikihow",
    "writingprompts",
    "stackexchange_stem",
    "stackexchange_other",
    "pool",
]


def _progress_factory(enabled: bool):
    @contextlib.contextmanager
    def progress(label: str, total: int):
        if not enabled:
            yield lambda n: None
            return
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        console = Console(stderr=True)
        with Progress(
            "{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=not console.is_terminal,
        ) as bar:
            task = bar.add_task(label, total=total)
            yield lambda n: bar.advance(task, n)

    return progress


def _bucket_order(pools: dict) -> list[str]:
    return [b for b in PRIORITY if b in pools] + sorted(b for b in pools if b not in PRIORITY)


def curate(config: CurateConfig) -> dict:
    """Run the whole curation; return summary counts (also written into ``card.md``)."""
    from limakit.curation.card import write_card

    cfg = config
    if not any(
        [
            cfg.stackexchange,
            cfg.wikihow,
            cfg.reddit,
            cfg.natural_instructions,
            cfg.manual,
            cfg.sharegpt,
            cfg.pool,
        ]
    ):
        raise LimaError(
            "no source given: set at least one of stackexchange, wikihow, reddit, "
            "natural_instructions, manual, sharegpt, pool"
        )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    progress = _progress_factory(cfg.progress)
    pools: dict[str, dict[str, list[Example]]] = {}
    sizes: dict[str, float] = {}
    tests: list[Example] = []
    stats: dict = {}

    with atomic_write(out / "rejected.jsonl") as rej:
        funnel = Funnel(rej)
        if cfg.stackexchange:
            gather_stackexchange(cfg, pools, funnel, sizes, progress)
        if cfg.wikihow:
            gather_wikihow(cfg, pools, funnel)
        if cfg.reddit:
            gather_reddit(cfg, pools, funnel, tests)
        if cfg.natural_instructions:
            gather_sni(cfg, pools, funnel)
        if cfg.manual:
            gather_manual(cfg, pools, funnel, tests)
        if cfg.sharegpt or cfg.pool:
            gather_pool(cfg, pools, funnel, stats)

        # Dedup and decontamination across all sources, in priority order.
        order = _bucket_order(pools)
        flat = [(b, g, ex) for b in order for g in sorted(pools[b]) for ex in pools[b][g]]
        where = {id(ex): (b, g) for b, g, ex in flat}
        candidates = [ex for _, _, ex in flat]
        near = cfg.dedup.near and not (set(pools) == {"pool"} and cfg.select != "lima-rules")
        kept, removed = deduplicate(
            candidates,
            exact=cfg.dedup.exact,
            near=near,
            threshold=cfg.dedup.threshold,
            num_perm=cfg.dedup.num_perm,
            shingle=cfg.dedup.shingle,
        )
        if cfg.decontaminate.against:
            decon = Decontaminator(cfg.decontaminate.against, n=cfg.decontaminate.n)
            kept, removed2 = decon.split(kept, cfg.decontaminate.fields)
            removed += removed2
        for ex, rule, reason in removed:
            funnel.reject(ex.source, ex.id, rule, reason, ex)
        survivors: dict[str, dict[str, list[Example]]] = defaultdict(lambda: defaultdict(list))
        for ex in kept:
            b, g = where[id(ex)]
            survivors[b][g].append(ex)

        dev: list[Example] = []
        if cfg.splits and "manual" in survivors:
            manual = survivors["manual"]["manual"]
            dev_ids = set(
                id(e)
                for e in random.Random(f"{cfg.seed}:dev").sample(manual, min(cfg.dev, len(manual)))
            )
            dev = [e for e in manual if id(e) in dev_ids]
            survivors["manual"]["manual"] = [e for e in manual if id(e) not in dev_ids]

        available = {b: sum(len(v) for v in survivors[b].values()) for b in order}
        quotas = {b: cfg.quotas.get(b, 0) for b in order}
        for b in order:
            if b not in cfg.quotas:
                funnel.notes.append(f"bucket {b} has no quota in `quotas`; none of it was sampled")
        share = allocate(cfg.n, quotas, available)
        chosen: list[Example] = []
        for b in order:
            chosen += _sample_bucket(b, survivors[b], share.get(b, 0), cfg, sizes, rng)
        if len(chosen) < cfg.n:
            funnel.notes.append(
                f"asked for n={cfg.n} but only {len(chosen)} examples passed the rules"
            )
        write_examples(out / "examples.jsonl", chosen)
        if cfg.splits:
            write_examples(out / "dev.jsonl", dev)
            write_examples(out / "test.jsonl", tests)
        cfg.save(out / "config.yaml")
        summary = {
            "out": str(out),
            "examples": len(chosen),
            "by_source": _count(chosen, lambda e: e.source),
            "by_bucket": {
                b: sum(1 for e in chosen if where.get(id(e), ("",))[0] == b) for b in order
            },
            "read": dict(funnel.read),
            "eligible": available,
            "rejected": sum(funnel.counts.values()),
            "rejected_by_rule": funnel.by_rule(),
            "rejected_by_source_rule": {
                f"{s}/{r}": n for (s, r), n in sorted(funnel.counts.items())
            },
            "dev": len(dev) if cfg.splits else 0,
            "test": len(tests) if cfg.splits else 0,
            "prompt_only": len(tests),
            "notes": funnel.notes,
            **stats,
        }
        write_card(out, cfg, summary, chosen, sizes)
    return summary


def _count(items, key) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for it in items:
        out[key(it)] += 1
    return dict(out)


def _sample_bucket(
    bucket: str,
    groups: dict[str, list[Example]],
    k: int,
    cfg: CurateConfig,
    sizes: dict[str, float],
    rng: random.Random,
) -> list[Example]:
    """Each bucket's paper-faithful sampler; all draw from the one seeded generator in order."""
    if k <= 0:
        return []
    sub = random.Random(f"{cfg.seed}:{bucket}")  # per bucket: adding a source changes no other
    if bucket.startswith("stackexchange"):
        return temperature_sample(
            groups, {g: sizes.get(g, len(v)) for g, v in groups.items()}, k, tau=cfg.tau, rng=sub
        )
    if bucket == "wikihow":
        return category_sample(groups, k, rng=sub)
    items = [ex for g in sorted(groups) for ex in groups[g]]
    if bucket == "writingprompts":
        return items[:k]  # already ranked by prompt score
    if bucket == "pool" and cfg.select == "longest":
        return sorted(items, key=lambda e: (-len(e.answer or ""), e.id))[:k]
    return sub.sample(items, min(k, len(items)))

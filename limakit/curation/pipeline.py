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
from limakit.curation.dedup import Decontaminator, Deduper
from limakit.curation.draw import CategoryDrawer, ListDrawer, TemperatureDrawer
from limakit.curation.gather import (
    Funnel,
    apply_rules,
    check_inputs,
    gather_manual,
    gather_pool,
    gather_reddit,
    gather_sni,
    gather_stackexchange,
    gather_wikihow,
    se_example,
)
from limakit.curation.sampling import allocate
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
        if not console.is_terminal:  # logs and pipes get the summary, not bar redraws
            yield lambda n: None
            return
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
    check_inputs(cfg)  # an empty input file stops here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
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
            gather_pool(cfg, pools, funnel, stats, progress)

        # Dedup and decontamination across the eagerly read sources, in priority order; Stack
        # Exchange pairs go through the same checks lazily, when the sampler reaches them.
        order = _bucket_order(pools)
        se_buckets = [b for b in order if b.startswith("stackexchange")]
        flat = [
            (b, g, ex)
            for b in order
            if b not in se_buckets
            for g in sorted(pools[b])
            for ex in pools[b][g]
        ]
        near = cfg.dedup.near and not (set(pools) == {"pool"} and cfg.select != "lima-rules")
        deduper = Deduper(
            exact=cfg.dedup.exact,
            near=near,
            threshold=cfg.dedup.threshold,
            num_perm=cfg.dedup.num_perm,
            shingle=cfg.dedup.shingle,
        )
        decon = (
            Decontaminator(cfg.decontaminate.against, n=cfg.decontaminate.n)
            if cfg.decontaminate.against
            else None
        )
        survivors: dict[str, dict[str, list[Example]]] = defaultdict(lambda: defaultdict(list))
        for b, g, ex in flat:
            hit = deduper.check(ex) or _decon_hit(decon, ex, cfg)
            if hit:
                funnel.reject(ex.source, ex.id, hit[0], hit[1], ex)
            else:
                survivors[b][g].append(ex)

        dev: list[Example] = []
        if cfg.splits and "manual" in survivors:
            manual = survivors["manual"]["manual"]
            picked = random.Random(f"{cfg.seed}:dev").sample(manual, min(cfg.dev, len(manual)))
            dev_ids = {id(e) for e in picked}
            dev = [e for e in manual if id(e) in dev_ids]
            survivors["manual"]["manual"] = [e for e in manual if id(e) not in dev_ids]

        def make_se(pair) -> Example | None:
            ex = se_example(pair, cfg)
            if not apply_rules(ex, cfg.rules_by_source.get("stackexchange", []), cfg, funnel):
                return None
            hit = deduper.check(ex) or _decon_hit(decon, ex, cfg)
            if hit:
                funnel.reject(ex.source, ex.id, hit[0], hit[1], ex)
                return None
            return ex

        selection = None
        if "pool" in survivors and cfg.select != "lima-rules":
            from limakit.curation.select import select_pool

            pool_items = [ex for g in sorted(survivors["pool"]) for ex in survivors["pool"][g]]
            selection = select_pool(pool_items, cfg)
            funnel.notes.extend(selection.notes)
            survivors["pool"] = {"pool": [pool_items[i] for i in selection.order]}
        elif cfg.select != "lima-rules":
            funnel.notes.append(
                f"--select {cfg.select} applies to general pools (--pool, --sharegpt); "
                "no pool example reached selection"
            )

        drawers = {}
        for b in order:
            sub = random.Random(f"{cfg.seed}:{b}")  # per bucket: adding a source changes no other
            if b in se_buckets:
                if sum(len(v) for v in pools[b].values()) < cfg.se.examine_all_below:
                    made = {}
                    for site in sorted(pools[b]):
                        made[site] = [ex for ex in map(make_se, pools[b][site]) if ex is not None]
                    drawers[b] = TemperatureDrawer(made, sizes, cfg.tau, sub)
                else:
                    drawers[b] = TemperatureDrawer(pools[b], sizes, cfg.tau, sub, make_se)
            else:
                drawers[b] = _drawer(b, survivors[b], cfg, sub)
        for b in order:
            if b not in cfg.quotas:
                funnel.notes.append(f"bucket {b} has no quota in `quotas`; none of it was sampled")
        quotas = {b: cfg.quotas.get(b, 0) for b in order}
        picked_by: dict[str, list[Example]] = {b: [] for b in order}
        # Round 1 follows the quotas; later rounds hand a bucket's shortfall to the others.
        for _ in range(10):
            need = cfg.n - sum(len(v) for v in picked_by.values())
            available = {b: drawers[b].remaining for b in order}
            share = allocate(need, quotas, available)
            got = 0
            for b in order:
                new = drawers[b].draw(share.get(b, 0))
                picked_by[b] += new
                got += len(new)
            if got == 0 or got == need:
                break
        chosen = [ex for b in order for ex in picked_by[b]]
        available = {
            b: len(picked_by[b]) + drawers[b].remaining
            if b not in se_buckets
            else len(picked_by[b])
            for b in order
        }
        if selection is not None:
            available["pool"] = len(pool_items)  # the selector's order holds at most n of them
        for b in se_buckets:
            left = drawers[b].remaining
            if left:
                funnel.notes.append(
                    f"{b}: {left} ranked pairs were not examined (the sample was full before "
                    "the sampler reached them); rules ran on the examined ones only"
                )
        if len(chosen) < cfg.n:
            funnel.notes.append(
                f"asked for n={cfg.n} but only {len(chosen)} examples passed the rules"
            )
        where = {id(ex): b for b in order for ex in picked_by[b]}
        write_examples(out / "examples.jsonl", chosen)
        if cfg.splits:
            write_examples(out / "dev.jsonl", dev)
            write_examples(out / "test.jsonl", tests)
        cfg.save(out / "config.yaml")
        summary = {
            "out": str(out),
            "examples": len(chosen),
            "by_source": _count(chosen, lambda e: e.source),
            "by_bucket": {b: sum(1 for e in chosen if where.get(id(e)) == b) for b in order},
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
        if selection is not None:
            from limakit.curation.card import selection_stats

            summary["selection"] = selection_stats(
                out, cfg, pool_items, selection, [ex for ex in picked_by.get("pool", [])]
            )
        write_card(out, cfg, summary, chosen, sizes)
    return summary


def _count(items, key) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for it in items:
        out[key(it)] += 1
    return dict(out)


def _decon_hit(decon, ex: Example, cfg: CurateConfig) -> tuple[str, str] | None:
    if decon is None:
        return None
    text = (
        ex.prompt if cfg.decontaminate.fields == "prompt" else ex.prompt + "\n" + (ex.answer or "")
    )
    reason = decon.hit(text)
    return ("decontamination", reason) if reason else None


def _drawer(bucket: str, groups: dict[str, list[Example]], cfg: CurateConfig, rng: random.Random):
    """Each non-Stack-Exchange bucket's paper order."""
    if bucket == "wikihow":
        return CategoryDrawer(groups, rng)
    items = [ex for g in sorted(groups) for ex in groups[g]]
    if bucket == "writingprompts":
        return ListDrawer(items)  # already ranked by prompt score (top-voted first)
    if bucket == "pool" and cfg.select != "lima-rules":
        return ListDrawer(items)  # already in the selector's order (see curation.select)
    rng.shuffle(items)
    return ListDrawer(items)

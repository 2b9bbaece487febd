"""``curate(config)``: sources -> rules -> dedup -> decontamination -> sampling -> outputs.

Outputs in ``config.out`` (each written atomically): ``examples.jsonl``, ``rejected.jsonl`` (every
rejection with its ``rule`` and ``reason``), ``card.md`` with ``length_hist.png``, ``config.yaml``
and, with ``splits``, ``dev.jsonl`` and ``test.jsonl``.

>>> summary = curate(CurateConfig(wikihow=["wikihowAll.csv"], n=100, out="curated"))  # doctest: +SKIP
>>> summary.examples  # doctest: +SKIP
100
"""

from __future__ import annotations

import contextlib
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from limakit.curation.card import CurationSummary, selection_stats, write_card
from limakit.curation.config import CurateConfig
from limakit.curation.dedup import Decontaminator, Deduper
from limakit.curation.draw import CategoryDrawer, ListDrawer, TemperatureDrawer
from limakit.curation.gather import (
    Funnel,
    Pools,
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


@dataclass
class Gathered:
    """Every source read and passed through its rules, grouped by bucket and group."""

    pools: Pools = field(default_factory=dict)
    sizes: dict[str, float] = field(default_factory=dict)  # Stack Exchange site sizes
    tests: list[Example] = field(default_factory=list)  # prompt-only records
    stats: dict = field(default_factory=dict)

    @property
    def order(self) -> list[str]:
        return _bucket_order(self.pools)


@dataclass
class Screen:
    """Dedup and decontamination, shared by the eager sources and the lazy Stack Exchange draws."""

    cfg: CurateConfig
    funnel: Funnel
    deduper: Deduper
    decon: Decontaminator | None

    def passes(self, ex: Example) -> bool:
        hit = self.deduper.check(ex) or _decon_hit(self.decon, ex, self.cfg)
        if hit:
            self.funnel.reject(ex.source, ex.id, hit[0], hit[1], ex)
        return not hit

    def stack_exchange(self, pair) -> Example | None:
        """A ranked Stack Exchange pair made into an example, if it passes rules and screen."""
        ex = se_example(pair, self.cfg)
        rules = self.cfg.rules_by_source.get("stackexchange", [])
        if not apply_rules(ex, rules, self.cfg, self.funnel):
            return None
        return ex if self.passes(ex) else None


def gather(cfg: CurateConfig, funnel: Funnel, progress) -> Gathered:
    """Read every configured source through its rules."""
    g = Gathered()
    if cfg.stackexchange:
        gather_stackexchange(cfg, g.pools, funnel, g.sizes, progress)
    if cfg.wikihow:
        gather_wikihow(cfg, g.pools, funnel)
    if cfg.reddit:
        gather_reddit(cfg, g.pools, funnel, g.tests)
    if cfg.natural_instructions:
        gather_sni(cfg, g.pools, funnel)
    if cfg.manual:
        gather_manual(cfg, g.pools, funnel, g.tests)
    if cfg.sharegpt or cfg.pool:
        gather_pool(cfg, g.pools, funnel, g.stats, progress)
    return g


def screen(cfg: CurateConfig, g: Gathered, funnel: Funnel) -> tuple[Screen, Pools]:
    """Dedup and decontaminate the eagerly read sources in priority order; the survivors.

    Stack Exchange pairs go through the same screen lazily, when the sampler reaches them.
    """
    near = cfg.dedup.near and not (set(g.pools) == {"pool"} and cfg.select != "lima-rules")
    deduper = Deduper(
        exact=cfg.dedup.exact,
        near=near,
        threshold=cfg.dedup.threshold,
        num_perm=cfg.dedup.num_perm,
        shingle=cfg.dedup.shingle,
    )
    against = cfg.decontaminate.against
    decon = Decontaminator(against, n=cfg.decontaminate.n) if against else None
    sc = Screen(cfg, funnel, deduper, decon)
    survivors: Pools = defaultdict(lambda: defaultdict(list))
    for b in g.order:
        if b.startswith("stackexchange"):
            continue
        for group in sorted(g.pools[b]):
            for ex in g.pools[b][group]:
                if sc.passes(ex):
                    survivors[b][group].append(ex)
    return sc, survivors


def split_dev(cfg: CurateConfig, survivors: Pools) -> list[Example]:
    """Hold out ``cfg.dev`` hand-written examples as the dev set (with ``splits``)."""
    if not (cfg.splits and "manual" in survivors):
        return []
    manual = survivors["manual"]["manual"]
    picked = random.Random(f"{cfg.seed}:dev").sample(manual, min(cfg.dev, len(manual)))
    dev_ids = {id(e) for e in picked}
    survivors["manual"]["manual"] = [e for e in manual if id(e) not in dev_ids]
    return [e for e in manual if id(e) in dev_ids]


def select_from_pool(cfg: CurateConfig, survivors: Pools, funnel: Funnel):
    """Order a general pool by ``cfg.select``; returns (selection, pool items) or (None, [])."""
    if "pool" in survivors and cfg.select != "lima-rules":
        from limakit.curation.select import select_pool

        items = [ex for g in sorted(survivors["pool"]) for ex in survivors["pool"][g]]
        selection = select_pool(items, cfg)
        funnel.notes.extend(selection.notes)
        survivors["pool"] = {"pool": [items[i] for i in selection.order]}
        return selection, items
    if cfg.select != "lima-rules":
        funnel.notes.append(
            f"--select {cfg.select} applies to general pools (--pool, --sharegpt); "
            "no pool example reached selection"
        )
    return None, []


def make_drawers(cfg: CurateConfig, g: Gathered, sc: Screen, survivors: Pools) -> dict:
    """One drawer per bucket, each in the paper's order for that source."""
    drawers = {}
    for b in g.order:
        sub = random.Random(f"{cfg.seed}:{b}")  # per bucket: adding a source changes no other
        if not b.startswith("stackexchange"):
            drawers[b] = _drawer(b, survivors[b], cfg, sub)
        elif sum(len(v) for v in g.pools[b].values()) < cfg.se.examine_all_below:
            made = {}
            for site in sorted(g.pools[b]):
                made[site] = [ex for ex in map(sc.stack_exchange, g.pools[b][site]) if ex]
            drawers[b] = TemperatureDrawer(made, g.sizes, cfg.tau, sub)
        else:
            drawers[b] = TemperatureDrawer(g.pools[b], g.sizes, cfg.tau, sub, sc.stack_exchange)
    return drawers


def sample(cfg: CurateConfig, order: list[str], drawers: dict, funnel: Funnel) -> dict:
    """Draw ``cfg.n`` examples by the bucket quotas; a bucket's shortfall goes to the others."""
    for b in order:
        if b not in cfg.quotas:
            funnel.notes.append(f"bucket {b} has no quota in `quotas`; none of it was sampled")
    quotas = {b: cfg.quotas.get(b, 0) for b in order}
    picked_by: dict[str, list[Example]] = {b: [] for b in order}
    for _ in range(10):  # round 1 follows the quotas; later rounds hand on the shortfall
        need = cfg.n - sum(len(v) for v in picked_by.values())
        share = allocate(need, quotas, {b: drawers[b].remaining for b in order})
        got = 0
        for b in order:
            new = drawers[b].draw(share.get(b, 0))
            picked_by[b] += new
            got += len(new)
        if got == 0 or got == need:
            break
    for b in order:
        left = drawers[b].remaining
        if b.startswith("stackexchange") and left:
            funnel.notes.append(
                f"{b}: {left} ranked pairs were not examined (the sample was full before "
                "the sampler reached them); rules ran on the examined ones only"
            )
    return picked_by


def summarise(
    cfg: CurateConfig, g: Gathered, funnel: Funnel, drawers: dict, picked_by: dict, dev, pool_size
) -> CurationSummary:
    order = g.order
    chosen = [ex for b in order for ex in picked_by[b]]
    if len(chosen) < cfg.n:
        funnel.notes.append(f"asked for n={cfg.n} but only {len(chosen)} examples passed the rules")
    eligible = {
        b: len(picked_by[b]) + (0 if b.startswith("stackexchange") else drawers[b].remaining)
        for b in order
    }
    if pool_size:
        eligible["pool"] = pool_size  # the selector's order holds at most n of them
    return CurationSummary(
        out=str(cfg.out),
        examples=len(chosen),
        by_source=_count(chosen, lambda e: e.source),
        by_bucket={b: len(picked_by[b]) for b in order},
        read=dict(funnel.read),
        eligible=eligible,
        rejected=sum(funnel.counts.values()),
        rejected_by_rule=funnel.by_rule(),
        rejected_by_source_rule={f"{s}/{r}": n for (s, r), n in sorted(funnel.counts.items())},
        dev=len(dev) if cfg.splits else 0,
        test=len(g.tests) if cfg.splits else 0,
        prompt_only=len(g.tests),
        notes=funnel.notes,
        sharegpt=g.stats.get("sharegpt", []),
    )


def _check_sources(cfg: CurateConfig) -> None:
    given = [cfg.stackexchange, cfg.wikihow, cfg.reddit, cfg.natural_instructions, cfg.manual]
    if not any([*given, cfg.sharegpt, cfg.pool]):
        raise LimaError(
            "no source given: set at least one of stackexchange, wikihow, reddit, "
            "natural_instructions, manual, sharegpt, pool"
        )


def curate(config: CurateConfig) -> CurationSummary:
    """gather -> rules -> dedup/decontaminate -> split -> select -> sample -> write.

    Returns the summary (also written into ``card.md``).
    """

    cfg = config
    _check_sources(cfg)
    out = Path(cfg.out)
    check_inputs(cfg)  # an empty input file stops here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "rejected.jsonl") as rej:
        funnel = Funnel(rej)
        g = gather(cfg, funnel, _progress_factory(cfg.progress))
        sc, survivors = screen(cfg, g, funnel)
        dev = split_dev(cfg, survivors)
        selection, pool_items = select_from_pool(cfg, survivors, funnel)
        drawers = make_drawers(cfg, g, sc, survivors)
        picked_by = sample(cfg, g.order, drawers, funnel)
        chosen = [ex for b in g.order for ex in picked_by[b]]
        summary = summarise(cfg, g, funnel, drawers, picked_by, dev, len(pool_items))
        write_examples(out / "examples.jsonl", chosen)
        if cfg.splits:
            write_examples(out / "dev.jsonl", dev)
            write_examples(out / "test.jsonl", g.tests)
        cfg.save(out / "config.yaml")
        if selection is not None:
            summary.selection = selection_stats(
                out, cfg, pool_items, selection, picked_by.get("pool", [])
            )
        write_card(out, cfg, summary, chosen, g.sizes)
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

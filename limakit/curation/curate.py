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
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from limakit.core.console import progress
from limakit.core.errors import LimaError
from limakit.core.files import atomic_write
from limakit.curation.card import CurationSummary, selection_stats, write_card
from limakit.curation.config import CurateConfig
from limakit.curation.dedup import Decontaminator, Deduper
from limakit.curation.draw import CategoryDrawer, ListDrawer, TemperatureDrawer
from limakit.curation.gather import (
    Funnel,
    Gathered,
    Pools,
    SourceContext,
    apply_rules,
    check_inputs,
    check_sources,
    gather,
)
from limakit.curation.length import RULE as TOO_LONG
from limakit.curation.length import TokenLengths
from limakit.curation.sampling import allocate
from limakit.records.example import Example, write_examples


def _progress_factory(enabled: bool):
    """``ctx.progress(label, total)`` of the sources: a bar over the bytes of a dump read."""

    @contextlib.contextmanager
    def bytes_read(label: str, total: int) -> Iterator[Callable[[int], None]]:
        with progress(label, total, unit="bytes", enabled=enabled) as bar:
            yield bar.advance

    return bytes_read


@dataclass
class Screen:
    """Dedup and decontamination, shared by the eager sources and the lazy Stack Exchange draws."""

    cfg: CurateConfig
    funnel: Funnel
    deduper: Deduper
    decon: Decontaminator | None
    lengths: TokenLengths | None = None

    def passes(self, ex: Example) -> bool:
        hit = _length_hit(self.lengths, ex) or self.deduper.check(ex)
        hit = hit or _decon_hit(self.decon, ex, self.cfg)
        if hit:
            self.funnel.reject(ex.source, ex.id, hit[0], hit[1], ex)
        return not hit

    def maker(self, ctx: SourceContext):
        """Raw records of a lazy source made into examples, if they pass rules and screen."""
        make = ctx.source.maker()

        def made(item) -> Example | None:
            ex = make(item, ctx)
            if not apply_rules(ex, ctx.rules, self.cfg, self.funnel):
                return None
            return ex if self.passes(ex) else None

        return made


def screen(cfg: CurateConfig, g: Gathered, funnel: Funnel) -> tuple[Screen, Pools]:
    """Dedup and decontaminate the eagerly read sources in priority order; the survivors.

    Raw records (Stack Exchange pairs) go through the same screen lazily, when the sampler
    reaches them.
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
    lengths = None
    if cfg.max_len is not None:  # counted in the tokenizer and template training will load
        from limakit.models import load_model_for

        loaded = load_model_for(cfg.tokenizer, "cpu", "float32", weights=False)
        lengths = TokenLengths(loaded, cfg.max_len)
    sc = Screen(cfg, funnel, deduper, decon, lengths)
    survivors: Pools = defaultdict(lambda: defaultdict(list))
    for b in g.order:
        if g.lazy(b):
            continue
        for group in sorted(g.pools[b]):
            for ex in g.pools[b][group]:
                if sc.passes(ex):
                    survivors[b][group].append(ex)
    return sc, survivors


def hold_out(cfg: CurateConfig, survivors: Pools, n: int, salt: str) -> list[Example]:
    """Take ``n`` examples out of the survivors (with ``splits``), seeded by ``salt``: hand-written
    ones (the paper's dev set), or with ``dev_from: any`` any screened example of the eager
    sources. They are never drawn for training."""
    if not cfg.splits or n <= 0:
        return []
    if cfg.dev_from == "manual":
        groups = [("manual", "manual")] if "manual" in survivors else []
    else:
        groups = [(b, g) for b in sorted(survivors) for g in sorted(survivors[b])]
    every = [ex for b, g in groups for ex in survivors[b][g]]
    picked = {id(e) for e in random.Random(f"{cfg.seed}:{salt}").sample(every, min(n, len(every)))}
    for b, g in groups:
        survivors[b][g] = [e for e in survivors[b][g] if id(e) not in picked]
    return [e for e in every if id(e) in picked]


def select_from_pool(cfg: CurateConfig, survivors: Pools, funnel: Funnel):
    """Order a general pool by ``cfg.select``; returns (selection, pool items) or (None, [])."""
    if "pool" in survivors and cfg.select != "lima-rules":
        from limakit.curation.pool_select import select_pool

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
    """One drawer per bucket, each in its source's order; a lazy source's raw groups are drawn by
    temperature (P ~ size^(1/tau)), each record made into an example when reached."""
    drawers = {}
    for b in g.order:
        sub = random.Random(f"{cfg.seed}:{b}")  # per bucket: adding a source changes no other
        ctx = g.by_bucket[b]
        if not g.lazy(b):
            drawers[b] = _drawer(ctx.source.drawer_for(cfg), survivors[b], sub)
            continue
        make = sc.maker(ctx)
        if sum(len(v) for v in g.pools[b].values()) < getattr(ctx.options, "examine_all_below", 0):
            made = {}
            for group in sorted(g.pools[b]):
                made[group] = [ex for ex in map(make, g.pools[b][group]) if ex]
            drawers[b] = TemperatureDrawer(made, g.sizes, cfg.tau, sub)
        else:
            drawers[b] = TemperatureDrawer(g.pools[b], g.sizes, cfg.tau, sub, make)
    return drawers


def sample(
    cfg: CurateConfig, order: list[str], drawers: dict, funnel: Funnel, lazy: Collection[str] = ()
) -> dict:
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
        if b in lazy and left:
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
    eligible = {b: len(picked_by[b]) + (0 if g.lazy(b) else drawers[b].remaining) for b in order}
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


def curate(config: CurateConfig) -> CurationSummary:
    """gather -> rules -> dedup/decontaminate -> split -> select -> sample -> write.

    Returns the summary (also written into ``card.md``).
    """

    cfg = config
    check_sources(cfg)
    out = Path(cfg.out)
    check_inputs(cfg)  # an empty input file stops here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "rejected.jsonl") as rej:
        funnel = Funnel(rej)
        g = gather(cfg, funnel, _progress_factory(cfg.progress))
        sc, survivors = screen(cfg, g, funnel)
        dev = hold_out(cfg, survivors, cfg.dev, "dev")
        held = hold_out(cfg, survivors, cfg.test, "test")
        selection, pool_items = select_from_pool(cfg, survivors, funnel)
        drawers = make_drawers(cfg, g, sc, survivors)
        picked_by = sample(cfg, g.order, drawers, funnel, {b for b in g.order if g.lazy(b)})
        chosen = [ex for b in g.order for ex in picked_by[b]]
        summary = summarise(cfg, g, funnel, drawers, picked_by, dev, len(pool_items))
        summary.held_out_test, summary.dev_from = len(held), cfg.dev_from
        summary.test += len(held) if cfg.splits else 0
        write_examples(out / "examples.jsonl", chosen)
        if cfg.splits:
            write_examples(out / "dev.jsonl", dev)
            write_examples(out / "test.jsonl", [*held, *g.tests])
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


def _length_hit(lengths: TokenLengths | None, ex: Example) -> tuple[str, str] | None:
    reason = lengths.too_long(ex) if lengths is not None else None
    return (TOO_LONG, reason) if reason else None


def _decon_hit(decon, ex: Example, cfg: CurateConfig) -> tuple[str, str] | None:
    if decon is None:
        return None
    text = (
        ex.prompt if cfg.decontaminate.fields == "prompt" else ex.prompt + "\n" + (ex.answer or "")
    )
    reason = decon.hit(text)
    return ("decontamination", reason) if reason else None


def _drawer(kind: str, groups: dict[str, list[Example]], rng: random.Random):
    """An eager bucket's drawer: ``categories`` (a category uniformly, then an article: wikiHow),
    ``ranked`` (the reader's order, or the selector's) or ``shuffled`` (seeded)."""
    if kind == "categories":
        return CategoryDrawer(groups, rng)
    items = [ex for g in sorted(groups) for ex in groups[g]]
    if kind == "ranked":
        return ListDrawer(items)
    if kind != "shuffled":
        raise LimaError(f"unknown drawer {kind!r} (known: shuffled, ranked, categories)")
    rng.shuffle(items)
    return ListDrawer(items)

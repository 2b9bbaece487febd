"""Turn each registered source into candidates: read, apply the source's rules, report rejections.

:func:`gather_source` runs one source's reader (see :mod:`limakit.sources.registry`) and acts on
what it yields: a candidate goes through the source's rules into ``pools[bucket][group]`` (in the
reader's order, best first where the source ranks), a rejection goes to the :class:`Funnel`, a
raw group waits for the sampler, which makes its examples when it reaches them.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from limakit.core.errors import LimaError
from limakit.core.files import append_jsonl, is_blank
from limakit.curation.config import CurateConfig
from limakit.curation.rules import check
from limakit.records.example import Example
from limakit.records.formats import excerpt
from limakit.sources import registry as reg
from limakit.sources.se_source import Exchanges, exchanges

Pools = dict[str, dict[str, list[Any]]]  # bucket -> group -> examples (or raw records)


class Funnel:
    """Counts per (source, rule) and writes one ``rejected.jsonl`` row per rejection."""

    def __init__(self, f: IO[str] | None) -> None:
        self.f = f
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        self.read: dict[str, int] = defaultdict(int)
        self.notes: list[str] = []

    def reject(
        self,
        source: str,
        rid: str,
        rule: str,
        reason: str,
        ex: Example | None = None,
        meta: dict | None = None,
    ) -> None:
        self.counts[(source, rule)] += 1
        if self.f is not None:
            row = {"id": rid, "source": source, "rule": rule, "reason": reason}
            if ex is not None and ex.messages:
                row["prompt"] = ex.prompt[:300]
            if meta is None:  # an example's own meta, bounded like every rejected record
                meta = excerpt(ex.meta) if ex is not None else {}
            row["meta"] = meta
            append_jsonl(self.f, row, flush=False)

    def by_rule(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for (_, rule), n in self.counts.items():
            out[rule] += n
        return dict(out)


def apply_rules(ex: Example, names: list[str], cfg: CurateConfig, funnel: Funnel) -> bool:
    try:
        hit = check(ex, names, cfg.rules)
    except ValueError as e:
        raise LimaError(f"config rules_by_source: {e}") from None
    if hit:
        funnel.reject(ex.source, ex.id, hit[0], hit[1], ex)
        return False
    return True


def se_exchanges(cfg: CurateConfig) -> Exchanges:
    """Which sites of ``cfg.stackexchange`` are read; a listing only, no site is opened."""
    return exchanges(cfg.stackexchange, cfg.se.include_meta)


@dataclasses.dataclass
class SourceContext:
    """What a reader (and a ``make``) gets: see :mod:`limakit.sources.registry`."""

    cfg: CurateConfig
    source: reg.Source
    options: Any
    rules: list[str]
    progress: Callable
    emit: Callable[[Any], None]

    @staticmethod
    def clean_html(html: str) -> str:
        from limakit.curation.markdown import html_to_markdown

        return html_to_markdown(html)


@dataclasses.dataclass
class Gathered:
    """Every source read and passed through its rules, grouped by bucket and group."""

    pools: Pools = dataclasses.field(default_factory=dict)
    sizes: dict[str, float] = dataclasses.field(default_factory=dict)  # raw groups' sizes
    tests: list[Example] = dataclasses.field(default_factory=list)  # prompt-only records
    stats: dict = dataclasses.field(default_factory=dict)
    by_bucket: dict[str, SourceContext] = dataclasses.field(default_factory=dict)

    def add(self, ctx: SourceContext, bucket: str, group: str, items: list) -> None:
        self.pools.setdefault(bucket, {}).setdefault(group, []).extend(items)
        self.by_bucket.setdefault(bucket, ctx)

    def lazy(self, bucket: str) -> bool:
        """Whether the bucket holds raw records, made into examples when drawn."""
        ctx = self.by_bucket.get(bucket)
        return ctx is not None and ctx.source.make is not None

    @property
    def order(self) -> list[str]:
        """Buckets in dedup order: the registered ones by priority, then any other by name."""
        srcs = reg.sources()
        ranked = sorted(
            ((s.priority, i, j, b) for i, s in enumerate(srcs) for j, b in enumerate(s.buckets)),
        )
        known = list(dict.fromkeys(b for *_, b in ranked))
        return [b for b in known if b in self.pools] + sorted(
            b for b in self.pools if b not in known
        )


def gather_source(
    src: reg.Source, cfg: CurateConfig, g: Gathered, funnel: Funnel, progress
) -> None:
    """Read one source through its reader and rules into ``g``."""
    names = cfg.rules_by_source.get(src.rule_set_for(cfg), [])
    key = src.options_key
    options = getattr(cfg, key) if key else None
    lazy = src.make is not None

    def emit(ev) -> None:
        if isinstance(ev, Example):
            ev = reg.Candidate(ev)
        if isinstance(ev, reg.Candidate):
            bucket = ev.bucket or src.bucket
            if ev.counted:
                funnel.read[bucket] += 1
            if lazy or apply_rules(ev.item, names, cfg, funnel):
                g.add(ctx, bucket, ev.group or src.name, [ev.item])
        elif isinstance(ev, reg.Rejection):
            if ev.counted:
                funnel.read[ev.bucket or src.bucket] += 1
            source = ev.source or (ev.example.source if ev.example is not None else src.name)
            funnel.reject(source, ev.id, ev.rule, ev.reason, ev.example, ev.meta)
        elif isinstance(ev, reg.Read):
            funnel.read[ev.bucket or src.bucket] += ev.n
        elif isinstance(ev, reg.Note):
            funnel.notes.append(ev.text)
        elif isinstance(ev, reg.TestPrompt):
            if ev.counted:
                funnel.read[src.bucket] += 1
            g.tests.append(ev.example)
        elif isinstance(ev, reg.Group):
            g.add(ctx, ev.bucket, ev.group, ev.items)
            if ev.size is not None:
                g.sizes[ev.group] = ev.size
        elif isinstance(ev, reg.Stat):
            g.stats.setdefault(ev.key, []).append(ev.value)
        else:
            raise TypeError(f"source {src.name!r} yielded {type(ev).__name__}")

    ctx = SourceContext(cfg, src, options, names, progress, emit)
    for ev in src.reader()(list(getattr(cfg, src.field)), ctx):
        emit(ev)


def gather(cfg: CurateConfig, funnel: Funnel, progress) -> Gathered:
    """Read every configured source through its rules, in registry order."""
    g = Gathered()
    for src in reg.sources():
        if getattr(cfg, src.field):
            gather_source(src, cfg, g, funnel, progress)
    return g


def check_sources(cfg: CurateConfig) -> None:
    """At least one source must be given."""
    fields = [s.field for s in reg.sources()]
    if not any(getattr(cfg, f) for f in fields):
        raise LimaError(f"no source given: set at least one of {', '.join(fields)}")


def check_inputs(cfg: CurateConfig) -> None:
    """Refuse an empty input file before anything is written (a curation of nothing is a mistake)."""
    for src in reg.sources():
        if not src.files:
            continue
        for name in getattr(cfg, src.field):
            path = Path(name)
            if path.is_file() and path.suffix.lower() != ".zst" and is_blank(path):
                raise LimaError(f"{path}: empty file ({src.field} input); nothing curated")

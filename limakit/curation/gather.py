"""Turn each source into candidates: read, clean, apply the source's rules, report rejections.

Each ``gather_*`` function yields nothing; it appends kept examples to ``pools[bucket][group]``
(best first where the source has an order) and sends every rejection to the :class:`Funnel`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import IO

import yaml

from limakit.curation.config import CurateConfig
from limakit.curation.markdown import html_to_markdown
from limakit.curation.rules import SITE_RULES, check
from limakit.errors import LimaError
from limakit.example import Example, Message
from limakit.files import append_jsonl, is_blank
from limakit.formats import ReadReport, Rejects, excerpt

Pools = dict[str, dict[str, list[Example]]]  # bucket -> group -> examples


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


def site_groups(cfg: CurateConfig) -> dict[str, str]:
    if cfg.se.site_groups:
        path = Path(cfg.se.site_groups)
        if not path.exists():
            raise LimaError(f"{path}: site groups file not found")
        text = path.read_text(encoding="utf-8")
    else:
        text = (
            resources.files("limakit.curation")
            .joinpath("data", "stackexchange_sites.yaml")
            .read_text(encoding="utf-8")
        )
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise LimaError("site groups must map a group name to a list of sites")
    return {
        str(site).lower(): str(group) for group, sites in data.items() for site in (sites or [])
    }


@dataclasses.dataclass
class Exchanges:
    """The Stack Exchange sites of the configured dumps: ``(site name, path)`` pairs to read, and
    the meta sites left out (``se.include_meta`` false) or read (true)."""

    read: list[tuple[str, Path]] = dataclasses.field(default_factory=list)
    meta_skipped: list[tuple[str, Path]] = dataclasses.field(default_factory=list)
    meta_read: list[tuple[str, Path]] = dataclasses.field(default_factory=list)


def se_exchanges(cfg: CurateConfig) -> Exchanges:
    """Which sites of ``cfg.stackexchange`` are read; a listing only, no site is opened."""
    from limakit.sources.stackexchange import find_sites, is_meta_site, site_name

    ex = Exchanges()
    for root in cfg.stackexchange:
        for site_path in find_sites(root):
            entry = (site_name(site_path), site_path)
            if not is_meta_site(site_path):
                ex.read.append(entry)
            elif cfg.se.include_meta:
                ex.read.append(entry)
                ex.meta_read.append(entry)
            else:
                ex.meta_skipped.append(entry)
    return ex


def gather_stackexchange(
    cfg: CurateConfig, pools: Pools, funnel: Funnel, sizes: dict[str, float], progress
) -> None:
    from limakit.sources.stackexchange import posts_file, scan_site

    groups = site_groups(cfg)
    names = cfg.rules_by_source.get("stackexchange", [])
    exchanges = se_exchanges(cfg)
    for site, site_path in exchanges.meta_skipped:
        funnel.reject(
            "stackexchange",
            f"se-{site}",
            "meta_site",
            f"{site_path.name}: {SITE_RULES['meta_site']}",
            meta={"site": site, "path": str(site_path)},
        )
    for site, site_path in exchanges.read:
        group = groups.get(site, cfg.se.unknown_group)
        bucket = f"stackexchange_{group}"
        if bucket not in cfg.quotas:
            bucket = "stackexchange_other"
        with posts_file(site_path) as posts:

            def on_reject(qid, rule, reason, qs, ascore, _site=site):
                funnel.reject(
                    "stackexchange",
                    f"se-{_site}-{qid}",
                    rule,
                    reason,
                    meta={"site": _site, "question_score": qs, "answer_score": ascore},
                )

            with progress(f"Stack Exchange {site}", posts.stat().st_size) as advance:
                scan = scan_site(
                    posts,
                    site=site,
                    pool=cfg.se.pool_per_site,
                    min_answer_score=cfg.rules.min_answer_score
                    if "answer_score" in names
                    else -(2**62),
                    min_question_score=cfg.rules.min_question_score
                    if "question_score" in names
                    else None,
                    progress=advance,
                    on_reject=on_reject,
                )
        funnel.read[bucket] += scan.questions
        if scan.beyond_pool:
            funnel.notes.append(
                f"{site}: {scan.beyond_pool} eligible questions ranked below the top "
                f"{cfg.se.pool_per_site} were not examined (se.pool_per_site)"
            )
        # Pairs stay raw: cleaning and the text rules run lazily, when the sampler reaches
        # them (see pipeline), so a site's 1,000th question costs nothing unless needed.
        for pair in scan.pairs:
            pair.group = group
        pools.setdefault(bucket, {})[site] = scan.pairs  # best first
        sizes[site] = scan.questions if cfg.se.size_by == "questions" else len(scan.pairs)


def se_example(pair, cfg: CurateConfig) -> Example:
    """A cleaned Stack Exchange example; the prompt is the title or the body (seeded per question)."""
    rng = random.Random(f"{cfg.seed}:{pair.site}:{pair.question_id}")
    use_title = cfg.se.prompt_from == "title" or (
        cfg.se.prompt_from == "random" and rng.random() < cfg.se.title_probability
    )
    # Clean the body only when it is the prompt: cleaning is the costly step.
    if use_title and pair.title.strip():
        prompt, prompt_from = pair.title.strip(), "title"
    else:
        prompt, prompt_from = html_to_markdown(pair.question_html), "body"
    return Example(
        [Message("user", prompt), Message("assistant", html_to_markdown(pair.answer_html))],
        source="stackexchange",
        id=f"se-{pair.site}-{pair.question_id}",
        meta={
            "site": pair.site,
            "group": pair.group,
            "question_id": pair.question_id,
            "answer_id": pair.answer_id,
            "question_score": pair.question_score,
            "answer_score": pair.answer_score,
            "accepted": pair.accepted,
            "prompt_from": prompt_from,
        },
    )


def gather_wikihow(cfg: CurateConfig, pools: Pools, funnel: Funnel) -> None:
    from limakit.sources.wikihow import read_wikihow

    names = cfg.rules_by_source.get("wikihow", [])
    opts = cfg.wikihow_options
    for path in cfg.wikihow:
        for ex in read_wikihow(path, columns=opts.columns, add_how_to=opts.add_how_to):
            funnel.read["wikihow"] += 1
            if apply_rules(ex, names, cfg, funnel):
                pools.setdefault("wikihow", {}).setdefault(ex.meta["category"], []).append(ex)


def gather_reddit(cfg: CurateConfig, pools: Pools, funnel: Funnel, tests: list[Example]) -> None:
    from limakit.sources.reddit import scan_reddit

    opts = cfg.reddit_options
    scan = scan_reddit(
        cfg.reddit,
        pool=opts.pool,
        test_prompts=opts.test_prompts,
        tags=tuple(opts.tags),
        min_story_score=opts.min_story_score,
    )
    for rid, rule, reason, meta in scan.rejected:
        funnel.reject("writingprompts", rid, rule, reason, meta=meta)
    for kind, n in sorted(scan.skipped.items()):
        funnel.notes.append(f"Reddit: {n} {kind} not used")
    if scan.beyond_pool:
        funnel.notes.append(
            f"Reddit: {scan.beyond_pool} prompts below the top {opts.pool} not examined"
        )
    funnel.read["writingprompts"] += scan.eligible + len(scan.rejected)
    names = cfg.rules_by_source.get("writingprompts", [])
    kept = [ex for ex in scan.pairs if apply_rules(ex, names, cfg, funnel)]
    pools.setdefault("writingprompts", {})["writingprompts"] = kept
    tests.extend(scan.test_prompts)


def gather_sni(cfg: CurateConfig, pools: Pools, funnel: Funnel) -> None:
    from limakit.sources.natural_instructions import GENERATION_CATEGORIES, read_tasks

    wanted = set(cfg.sni.categories or GENERATION_CATEGORIES)
    languages = set(cfg.sni.languages)
    names = cfg.rules_by_source.get("natural_instructions", [])
    for root in cfg.natural_instructions:
        for ex in read_tasks(root, seed=cfg.seed):
            funnel.read["natural_instructions"] += 1
            cats = ex.meta["categories"]
            if cfg.sni.generation_only and not wanted & set(cats):
                funnel.reject(
                    ex.source,
                    ex.id,
                    "not_generation",
                    f"categories {cats} are not generation tasks",
                    ex,
                )
                continue
            if languages and ex.meta["language"] and ex.meta["language"] not in languages:
                funnel.reject(
                    ex.source, ex.id, "language", f"input language {ex.meta['language']}", ex
                )
                continue
            if apply_rules(ex, names, cfg, funnel):
                pools.setdefault("natural_instructions", {}).setdefault("tasks", []).append(ex)


def gather_manual(cfg: CurateConfig, pools: Pools, funnel: Funnel, tests: list[Example]) -> None:
    from limakit.sources.manual import read_manual

    names = cfg.rules_by_source.get("manual", [])
    for path in cfg.manual:
        for ex in read_manual(path):
            funnel.read["manual"] += 1
            if ex.answer is None:
                tests.append(ex)  # group B: prompts without answers are test prompts
            elif apply_rules(ex, names, cfg, funnel):
                pools.setdefault("manual", {}).setdefault("manual", []).append(ex)


def _keep_pool_item(item, names: list[str], cfg: CurateConfig, funnel: Funnel, kept: list) -> None:
    funnel.read["pool"] += 1
    if isinstance(item, tuple):
        funnel.reject("sharegpt", f"sharegpt-{item[0]}", "conversation_shape", item[1])
    elif apply_rules(item, names, cfg, funnel):
        kept.append(item)


class PoolRejects(Rejects):
    """``skip_invalid``: a pool record that breaks the format rules is a funnel rejection
    (rule ``invalid_record``, with where, why and the record in ``rejected.jsonl``), not a stop."""

    def __init__(self, funnel: Funnel) -> None:
        self.funnel = funnel

    def add(self, where: str, reason: str, record) -> None:
        self.funnel.read["pool"] += 1
        self.funnel.reject(
            "pool", where, "invalid_record", reason, meta={"where": where, "record": record}
        )


def check_inputs(cfg: CurateConfig) -> None:
    """Refuse an empty input file before anything is written (a curation of nothing is a mistake)."""
    for field in ("wikihow", "reddit", "manual", "sharegpt", "pool"):
        for name in getattr(cfg, field):
            path = Path(name)
            if path.is_file() and path.suffix.lower() != ".zst" and is_blank(path):
                raise LimaError(f"{path}: empty file ({field} input); nothing curated")


def gather_pool(
    cfg: CurateConfig, pools: Pools, funnel: Funnel, stats: dict, progress=None
) -> None:
    from limakit.formats import read_any
    from limakit.sources.sharegpt import ShareGPTStream

    names = cfg.rules_by_source.get("pool" if cfg.select == "lima-rules" else "hygiene", [])
    kept = pools.setdefault("pool", {}).setdefault("pool", [])
    for path in cfg.sharegpt:
        stream = ShareGPTStream(path)
        with contextlib.ExitStack() as stack:
            advance = None
            if progress is not None and str(path) != "packaged" and Path(path).is_file():
                advance = stack.enter_context(
                    progress(f"ShareGPT {Path(path).name}", Path(path).stat().st_size)
                )
            seen = 0
            for item in stream.examples(turns=cfg.sharegpt_turns):
                if advance is not None and stream.bytes_read != seen:
                    advance(stream.bytes_read - seen)
                    seen = stream.bytes_read
                _keep_pool_item(item, names, cfg, funnel, kept)
        if stream.complete == 0 and not stream.truncated:
            raise LimaError(f"{stream.name}: the JSON list holds no conversation")
        stats.setdefault("sharegpt", []).append(
            {"file": stream.name, "complete": stream.complete, "truncated": stream.truncated}
        )
        if stream.truncated:
            funnel.notes.append(
                f"ShareGPT {stream.name}: the JSON list is cut off; read its {stream.complete} "
                "complete conversations and stopped at the break"
            )
    rejects = PoolRejects(funnel) if cfg.skip_invalid else None
    for path in cfg.pool:
        report = ReadReport()
        for ex in read_any(path, require_answer=True, report=report, rejects=rejects):
            funnel.read["pool"] += 1
            if apply_rules(ex, names, cfg, funnel):
                kept.append(ex)
        if report.unmapped_line():
            funnel.notes.append(f"{path}: {report.unmapped_line()}")

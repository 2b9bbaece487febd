"""Stack Exchange as a registered source: its options, the site groups (STEM / other), the
listing of exchanges, ``read`` (ranked pairs per site) and ``make_example`` (a pair made into a
cleaned example when the sampler reaches it)."""

from __future__ import annotations

import dataclasses
import random
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from limakit.core.config import Config
from limakit.core.errors import LimaError
from limakit.records.example import Example, Message
from limakit.sources.registry import Group, Note, Read, Rejection
from limakit.sources.se_sites import find_sites, is_meta_site, posts_file, site_name
from limakit.sources.stackexchange import scan_site

META_SITE = (
    "a meta site, about the site itself (policy, scope, bugs), not a Q&A exchange; "
    "se.include_meta=true reads it"
)


class StackExchangeConfig(Config):
    """Stack Exchange reading and sampling."""

    pool_per_site: int = Field(
        1000, description="Keep texts for at most this many best-scored questions per site."
    )
    include_meta: bool = Field(
        False,
        description="Also read meta sites (cstheory.meta.stackexchange.com, meta.stackoverflow.com, "
        "meta.stackexchange.com...), which discuss the site itself (policy, scope, bugs). LIMA "
        "drew from the main exchanges only: by default a meta site is skipped and counted in "
        "the funnel under the rule meta_site.",
    )
    prompt_from: Literal["random", "title", "body"] = Field(
        "random", description="Prompt = the question's title or body; 'random' picks per question."
    )
    title_probability: float = Field(0.5, description="With prompt_from=random: P(title).")
    size_by: Literal["questions", "eligible"] = Field(
        "questions",
        description="Exchange size for temperature sampling: its questions, or its examples "
        "that passed the rules.",
    )
    site_groups: str | None = Field(
        None, description="YAML file mapping site -> group (stem/other); default: the shipped one."
    )
    unknown_group: str = Field("other", description="Group of a site missing from the mapping.")
    examine_all_below: int = Field(
        500,
        description="With fewer ranked pairs than this in a bucket, clean and check them all (a "
        "complete funnel); above it, only those the sampler reaches (fast on big dumps).",
    )


def site_groups(opts: StackExchangeConfig) -> dict[str, str]:
    """Site -> group, from ``opts.site_groups`` or the mapping shipped with curation."""
    if opts.site_groups:
        path = Path(opts.site_groups)
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


def exchanges(roots: list[str], include_meta: bool) -> Exchanges:
    """Which sites of ``roots`` are read; a listing only, no site is opened."""
    ex = Exchanges()
    for root in roots:
        for site_path in find_sites(root):
            entry = (site_name(site_path), site_path)
            if not is_meta_site(site_path):
                ex.read.append(entry)
            elif include_meta:
                ex.read.append(entry)
                ex.meta_read.append(entry)
            else:
                ex.meta_skipped.append(entry)
    return ex


def read(paths: list[str], ctx):
    """Per site, its ranked pairs as one raw group; pairs stay raw (cleaning and the text rules
    run when the sampler reaches them), so a site's 1,000th question costs nothing unless needed."""
    opts, cfg = ctx.options, ctx.cfg
    groups = site_groups(opts)
    found = exchanges(paths, opts.include_meta)
    for site, site_path in found.meta_skipped:
        meta = {"site": site, "path": str(site_path)}
        reason = f"{site_path.name}: {META_SITE}"
        yield Rejection(f"se-{site}", "meta_site", reason, meta=meta, counted=False)
    for site, site_path in found.read:
        group = groups.get(site, opts.unknown_group)
        bucket = f"stackexchange_{group}"
        if bucket not in cfg.quotas:
            bucket = "stackexchange_other"
        with posts_file(site_path) as posts:

            def on_reject(qid, rule, reason, qs, ascore, _site=site):
                meta = {"site": _site, "question_score": qs, "answer_score": ascore}
                ctx.emit(Rejection(f"se-{_site}-{qid}", rule, reason, meta=meta, counted=False))

            with ctx.progress(f"Stack Exchange {site}", posts.stat().st_size) as advance:
                scan = scan_site(
                    posts,
                    site=site,
                    pool=opts.pool_per_site,
                    min_answer_score=cfg.rules.min_answer_score
                    if "answer_score" in ctx.rules
                    else -(2**62),
                    min_question_score=cfg.rules.min_question_score
                    if "question_score" in ctx.rules
                    else None,
                    progress=advance,
                    on_reject=on_reject,
                )
        yield Read(scan.questions, bucket)
        if scan.beyond_pool:
            yield Note(
                f"{site}: {scan.beyond_pool} eligible questions ranked below the top "
                f"{opts.pool_per_site} were not examined (se.pool_per_site)"
            )
        for pair in scan.pairs:
            pair.group = group
        size = scan.questions if opts.size_by == "questions" else len(scan.pairs)
        yield Group(bucket, site, scan.pairs, size)  # best first


def make_example(pair, ctx) -> Example:
    """A cleaned Stack Exchange example; the prompt is the title or the body (seeded per question)."""
    opts = ctx.options
    rng = random.Random(f"{ctx.cfg.seed}:{pair.site}:{pair.question_id}")
    use_title = opts.prompt_from == "title" or (
        opts.prompt_from == "random" and rng.random() < opts.title_probability
    )
    # Clean the body only when it is the prompt: cleaning is the costly step.
    if use_title and pair.title.strip():
        prompt, prompt_from = pair.title.strip(), "title"
    else:
        prompt, prompt_from = ctx.clean_html(pair.question_html), "body"
    return Example(
        [Message("user", prompt), Message("assistant", ctx.clean_html(pair.answer_html))],
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

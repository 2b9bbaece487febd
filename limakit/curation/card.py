"""The data card: source mix, per-rule funnel, length histogram (PNG), notes, and for a pool
selector the selection against its pool: lengths, sources, diversity and a 2-D projection (PNG)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from limakit.core.files import atomic_write
from limakit.curation.config import CurateConfig
from limakit.curation.rules import REFUSAL_RULES
from limakit.records.example import SAFETY_TAG, Example


class CurationSummary(BaseModel):
    """What a curation did, in counts (also in ``card.md``); fields are checked, not string keys."""

    out: str
    examples: int  # selected
    by_source: dict[str, int]
    by_bucket: dict[str, int]
    read: dict[str, int]  # records read per bucket
    eligible: dict[str, int]  # per bucket: passed rules, dedup and decontamination
    rejected: int
    rejected_by_rule: dict[str, int]
    rejected_by_source_rule: dict[str, int]
    dev: int
    test: int
    prompt_only: int  # records without an answer, set aside as test prompts
    held_out_test: int = 0  # examples held out with their answers into test.jsonl (`test`)
    dev_from: str = "manual"  # where dev (and held-out test) examples came from
    notes: list[str]
    sharegpt: list[dict] = []  # per ShareGPT file: complete conversations, truncated or not
    selection: dict | None = None  # --select over a pool: scores, diversity, plot


def write_histogram(path: Path, examples: list[Example]) -> None:
    """Answer lengths (characters) per source, as a stacked histogram, written atomically."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    by_source: dict[str, list[int]] = {}
    for ex in examples:
        by_source.setdefault(ex.source, []).append(len(ex.answer or ""))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if by_source:
        names = sorted(by_source)
        ax.hist([by_source[n] for n in names], bins=30, stacked=True, label=names)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no examples", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("answer length (characters)")
    ax.set_ylabel("examples")
    ax.set_title("Answer lengths")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def write_card(
    out: Path, cfg: CurateConfig, summary: CurationSummary, examples: list[Example], sizes: dict
) -> None:
    write_histogram(out / "length_hist.png", examples)
    lines = [
        "# Data card",
        "",
        f"{summary.examples} training examples selected (asked for {cfg.n}), seed {cfg.seed}.",
        "",
        "## Source mix",
        "",
        "| source | read | passed rules, dedup, decontamination | selected |",
        "|---|---:|---:|---:|",
    ]
    for bucket, n in summary.by_bucket.items():
        lines.append(
            f"| {bucket} | {summary.read.get(bucket, '')} | {summary.eligible.get(bucket, 0)} | {n} |"
        )
    lines += safety_lines(cfg, examples)
    lines += [
        "",
        "## Funnel: rejections per rule",
        "",
        "| source | rule | rejected |",
        "|---|---|---:|",
    ]
    for key, n in summary.rejected_by_source_rule.items():
        source, rule = key.split("/", 1)
        lines.append(f"| {source} | {rule} | {n} |")
    lines += [
        "",
        f"Total rejected: {summary.rejected} (each one is in `rejected.jsonl` with its rule and reason).",
    ]
    if cfg.stackexchange:
        lines += [
            "",
            f"## Stack Exchange sites (sampled with tau = {cfg.tau}: P ~ size^(1/tau))",
            "",
            *exchange_lines(cfg),
            "",
            "| site | size | selected |",
            "|---|---:|---:|",
        ]
        per_site: dict[str, int] = {}
        for ex in examples:
            if ex.source == "stackexchange":
                per_site[ex.meta["site"]] = per_site.get(ex.meta["site"], 0) + 1
        for site in sorted(sizes):
            lines.append(f"| {site} | {int(sizes[site])} | {per_site.get(site, 0)} |")
    lengths = [len(ex.answer or "") for ex in examples]
    lines += ["", "## Answer lengths", ""]
    if lengths:
        lines.append(
            f"characters: min {min(lengths)}, median {int(statistics.median(lengths))}, "
            f"mean {int(statistics.mean(lengths))}, max {max(lengths)}"
        )
    lines += ["", "![answer lengths](length_hist.png)", ""]
    if cfg.splits:
        lines += ["## Splits", "", *split_lines(summary), ""]
    elif summary.prompt_only:
        lines += [
            f"{summary.prompt_only} prompt-only records (test prompts) were set aside; "
            "ask for `splits` to write them to test.jsonl.",
            "",
        ]
    if summary.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in summary.notes] + [""]
    lines += ["## Selection", "", f"general pools: `{cfg.select}`; quotas: {cfg.quotas}", ""]
    if summary.selection:
        lines += selection_lines(summary.selection)
    with atomic_write(out / "card.md") as f:
        f.write("\n".join(lines) + "\n")


def safety_lines(cfg: CurateConfig, examples: list[Example]) -> list[str]:
    """The source mix's safety row and what the tag did: how many selected examples are tagged
    ``safety`` (within the sources above), that the refusal-removing rules passed them, and
    which tags ``rules.drop_tags`` left out."""
    n = sum(SAFETY_TAG in ex.tags for ex in examples)
    share = f" ({n / len(examples):.1%})" if examples else ""
    rules = ", ".join(f"`{r}`" for r in REFUSAL_RULES)
    lines = [
        f"| {SAFETY_TAG} (tagged, counted in its source above) | | | {n} |",
        "",
        f"Safety examples (`meta.tags` holds `{SAFETY_TAG}`): {n} of {len(examples)} selected"
        f"{share}; LIMA had 13 of 1,000. A tagged example is exempt from the rules that remove "
        f"refusals from community answers ({rules}): a refusal written on purpose is kept where "
        "the same answer from a forum would be dropped. Every other rule applies to it.",
    ]
    if cfg.rules.drop_tags:
        dropped = ", ".join(f"`{t}`" for t in cfg.rules.drop_tags)
        lines.append(
            f"Examples tagged {dropped} were left out (`rules.drop_tags`); the funnel counts them "
            "under `drop_tags`."
        )
    return lines


def split_lines(summary: CurationSummary) -> list[str]:
    """What dev.jsonl and test.jsonl hold. The test split is the prompt-only records of the
    inputs (AskReddit titles, hand-written prompts without an answer), often none at all."""
    kind = "hand-written example" if summary.dev_from == "manual" else "curated example"
    dev = (
        f"dev.jsonl: {summary.dev} {kind}{'' if summary.dev == 1 else 's'} held out from training."
    )
    if summary.held_out_test:
        test = (
            f"test.jsonl: {summary.test} prompts: {summary.held_out_test} {kind}s held out from "
            "training with their answers (the references of `reference_similarity`) and "
            f"{summary.prompt_only} prompt-only records of the inputs."
        )
    elif summary.test:
        test = (
            f"test.jsonl: {summary.test} prompts, the prompt-only records of the inputs "
            "(AskReddit titles, hand-written prompts without an answer)."
        )
    else:
        test = (
            "test.jsonl: empty; no input held a prompt-only record (AskReddit titles, "
            "hand-written prompts without an answer). Test prompts, if any, come from elsewhere."
        )
    return [dev, test]


def _names(entries: list) -> str:
    return ", ".join(sorted(name for name, _ in entries))


def exchange_lines(cfg: CurateConfig) -> list[str]:
    """Which exchanges were read and which meta sites were skipped (or read on request)."""
    from limakit.curation.gather import se_exchanges

    ex = se_exchanges(cfg)
    lines = [f"Exchanges read: {len(ex.read)} (the table below)."]
    if ex.meta_skipped:
        lines.append(
            f"Meta sites skipped: {len(ex.meta_skipped)} ({_names(ex.meta_skipped)}). A meta site "
            "discusses its site (policy, scope, bugs) rather than answering questions on its "
            "topic, and LIMA drew from the main exchanges only; the funnel counts each skipped "
            "site once under `meta_site`. `se.include_meta: true` (`--include-meta`) reads them."
        )
    elif ex.meta_read:
        lines.append(
            f"Meta sites read (`se.include_meta: true`): {len(ex.meta_read)} "
            f"({_names(ex.meta_read)}); each is sampled as one more exchange."
        )
    else:
        lines.append("No meta site among the inputs.")
    return lines


def _median(xs: list[int]) -> int:
    return int(statistics.median(xs)) if xs else 0


def _mean(xs: list[int]) -> float:
    return round(statistics.mean(xs), 1) if xs else 0.0


def _nanmean(values: np.ndarray) -> float | None:
    ok = values[np.isfinite(values)]
    return round(float(ok.mean()), 4) if len(ok) else None


def describe(examples: Sequence[Example]) -> dict:
    """Length and source figures of a set of examples (characters; turns = user messages)."""
    answers = [len(ex.answer or "") for ex in examples]
    prompts = [len(ex.prompt) for ex in examples]
    turns = [sum(1 for m in ex.messages if m.role == "user") for ex in examples]
    return {
        "examples": len(examples),
        "answer_median": _median(answers),
        "answer_mean": _mean(answers),
        "prompt_median": _median(prompts),
        "turns_mean": _mean(turns),
        "sources": dict(Counter(ex.source for ex in examples).most_common()),
    }


def mean_cosine_distance(unit: np.ndarray) -> float:
    """Mean cosine distance over all pairs of distinct rows (unit vectors), in O(n d).

    The sum of all pairwise dot products is |sum of rows|^2 minus the diagonal, so no n x n matrix.
    """
    n = len(unit)
    if n < 2:
        return 0.0
    total = unit.sum(axis=0, dtype=np.float64)
    diag = float(np.einsum("ij,ij->", unit, unit, dtype=np.float64))
    mean_sim = (float(total @ total) - diag) / (n * (n - 1))
    return 1.0 - mean_sim


def top_axes(cov: np.ndarray, k: int, iters: int = 200) -> np.ndarray:
    """The ``k`` leading eigenvectors of a symmetric matrix by seeded orthogonal iteration: a few
    small products instead of a full eigendecomposition (which a busy BLAS makes slow)."""
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(cov.shape[0], k)))[0]
    for _ in range(iters):
        q = np.linalg.qr(cov @ q)[0]
    return q


def pca_2d(x: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """(n, 2) projection on the two principal axes; the covariance is summed chunk by chunk."""
    mean = x.mean(axis=0, dtype=np.float64)
    cov = np.zeros((x.shape[1], x.shape[1]))
    for s in range(0, len(x), chunk):
        c = x[s : s + chunk].astype(np.float64) - mean
        cov += c.T @ c
    axes = top_axes(cov, 2)
    return ((x - mean) @ axes).astype(np.float32)


def write_projection(path: Path, embeddings: np.ndarray, chosen: Sequence[int], title: str) -> None:
    """Pool (grey) and selection (colour) on the pool's first two principal axes, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy = pca_2d(embeddings)
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    ax.scatter(xy[:, 0], xy[:, 1], s=2, c="#bbbbbb", label=f"pool ({len(xy)})", linewidths=0)
    sel = xy[np.asarray(chosen, dtype=np.int64)]
    ax.scatter(sel[:, 0], sel[:, 1], s=5, c="#d62728", label=f"selected ({len(sel)})")
    ax.set_xlabel("principal axis 1")
    ax.set_ylabel("principal axis 2")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8, markerscale=3)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def selection_stats(out: Path, cfg: CurateConfig, pool: Sequence[Example], result, chosen) -> dict:
    """Figures of the selection against its pool; with embeddings, diversity and the plot too."""
    from limakit.curation.selectors import kmeans

    index = {id(ex): i for i, ex in enumerate(pool)}
    picked = [index[id(ex)] for ex in chosen if id(ex) in index]
    stats = {
        "selector": cfg.select,
        "pool": describe(pool),
        "selection": describe(chosen),
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
        "computed": dict(result.computed),
    }
    stats["scores"] = {
        name: {
            "pool": _nanmean(values),
            "selection": _nanmean(values[picked]) if picked else None,
            "unscored": int(np.isnan(values).sum()),
        }
        for name, values in result.scores.items()
    }
    emb = result.embeddings
    if emb is not None and len(pool) and picked:
        k = min(cfg.selection.clusters or max(2, cfg.n // 10), len(pool))
        if result.kmeans is not None and result.kmeans[0] == k:
            labels = result.kmeans[1]  # the clusters selector's own clustering
        else:
            labels, _ = kmeans(emb, k, cfg.seed)
        stats["diversity"] = {
            "pool": round(mean_cosine_distance(emb), 4),
            "selection": round(mean_cosine_distance(emb[picked]), 4),
            "clusters": int(len(np.unique(labels))),
            "covered": int(len(np.unique(labels[picked]))),
            "embedder": cfg.selection.embedder,
        }
        write_projection(out / "selection_pca.png", emb, picked, f"{cfg.select}: pool vs selection")
    return stats


def selection_lines(s: dict) -> list[str]:
    pool, sel = s["pool"], s["selection"]
    lines = [
        f"Selector `{s['selector']}` over a pool of {pool['examples']} examples "
        "(after hygiene rules, dedup and decontamination).",
        "",
        "| | pool | selection |",
        "|---|---:|---:|",
        f"| examples | {pool['examples']} | {sel['examples']} |",
        f"| answer characters, median | {pool['answer_median']} | {sel['answer_median']} |",
        f"| answer characters, mean | {pool['answer_mean']} | {sel['answer_mean']} |",
        f"| prompt characters, median | {pool['prompt_median']} | {sel['prompt_median']} |",
        f"| user turns, mean | {pool['turns_mean']} | {sel['turns_mean']} |",
    ]
    for source in pool["sources"]:
        lines.append(
            f"| source `{source}` | {pool['sources'][source]} | {sel['sources'].get(source, 0)} |"
        )
    for name, v in s.get("scores", {}).items():
        lines.append(f"| {name} score, mean | {v['pool']} | {v['selection']} |")
    d = s.get("diversity")
    if d:
        lines += [
            f"| mean pairwise cosine distance | {d['pool']} | {d['selection']} |",
            f"| pool k-means clusters covered | {d['clusters']} | {d['covered']} "
            f"({d['covered'] / max(d['clusters'], 1):.0%}) |",
            "",
            f"Embeddings: `{d['embedder']}`. The plot shows the pool and the selection on the "
            "pool's first two principal axes.",
            "",
            "![pool vs selection](selection_pca.png)",
        ]
    computed = ", ".join(f"{k} {v}" for k, v in s["computed"].items())
    timing = ", ".join(f"{k} {v} s" for k, v in s["seconds"].items())
    lines += [
        "",
        f"Computed this run (not in the cache): {computed or 'nothing'}; time: {timing}.",
        "",
    ]
    return lines

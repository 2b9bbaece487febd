"""The data card: source mix, per-rule funnel, length histogram (PNG) and notes."""

from __future__ import annotations

import statistics
from pathlib import Path

from limakit.curation.config import CurateConfig
from limakit.example import Example
from limakit.files import atomic_write


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
    out: Path, cfg: CurateConfig, summary: dict, examples: list[Example], sizes: dict
) -> None:
    write_histogram(out / "length_hist.png", examples)
    lines = [
        "# Data card",
        "",
        f"{summary['examples']} training examples selected (asked for {cfg.n}), seed {cfg.seed}.",
        "",
        "## Source mix",
        "",
        "| source | read | passed rules, dedup, decontamination | selected |",
        "|---|---:|---:|---:|",
    ]
    for bucket, n in summary["by_bucket"].items():
        lines.append(
            f"| {bucket} | {summary['read'].get(bucket, '')} | {summary['eligible'].get(bucket, 0)} | {n} |"
        )
    lines += [
        "",
        "## Funnel: rejections per rule",
        "",
        "| source | rule | rejected |",
        "|---|---|---:|",
    ]
    for key, n in summary["rejected_by_source_rule"].items():
        source, rule = key.split("/", 1)
        lines.append(f"| {source} | {rule} | {n} |")
    lines += [
        "",
        f"Total rejected: {summary['rejected']} (each one is in `rejected.jsonl` with its rule and reason).",
    ]
    if sizes:
        lines += [
            "",
            f"## Stack Exchange sites (sampled with tau = {cfg.tau}: P ~ size^(1/tau))",
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
        lines += [
            "## Splits",
            "",
            f"dev: {summary['dev']} hand-written examples held out; "
            f"test: {summary['test']} prompts (AskReddit titles + hand-written prompts).",
            "",
        ]
    elif summary.get("prompt_only"):
        lines += [
            f"{summary['prompt_only']} prompt-only records (test prompts) were set aside; "
            "ask for `splits` to write them to test.jsonl.",
            "",
        ]
    if summary["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in summary["notes"]] + [""]
    lines += ["## Selection", "", f"general pools: `{cfg.select}`; quotas: {cfg.quotas}", ""]
    with atomic_write(out / "card.md") as f:
        f.write("\n".join(lines) + "\n")

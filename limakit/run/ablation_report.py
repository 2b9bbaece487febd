"""The ablation report: mean Likert score per arm with 95% intervals (the paper's Figures 5 and 6),
and a plain statement of which intervals overlap."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

from limakit.files import atomic_write
from limakit.run.report import to_html

TITLES = {
    "quantity": "Quantity: 2^k examples from the same pool",
    "quality": "Quality: filtered vs unfiltered, same size and source",
    "diversity": "Diversity: mixed vs homogeneous, same size",
}


def overlap(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def plot(ablation: str, rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["mean"] is not None]
    means = [r["mean"] for r in rows]
    err = [[r["mean"] - r["mean_ci"][0] for r in rows], [r["mean_ci"][1] - r["mean"] for r in rows]]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    if ablation == "quantity":  # Figure 6: score against training set size, log scale
        ax.errorbar([r["examples"] for r in rows], means, yerr=err, marker="o", capsize=4)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training examples")
    else:  # Figure 5: one bar per arm
        ax.bar(range(len(rows)), means, yerr=err, capsize=6, color="#2b6cb0", alpha=0.85)
        ax.set_xticks(range(len(rows)), [r["arm"] for r in rows])
    ax.set_ylim(1, 6)
    ax.set_ylabel("mean Likert score (1-6), 95% CI")
    ax.set_title(TITLES[ablation], fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def verdict_lines(rows: list[dict]) -> list[str]:
    """One sentence per pair of arms: overlapping intervals, or which arm is higher."""
    lines = []
    for a, b in combinations([r for r in rows if r["mean_ci"]], 2):
        ia, ib = a["mean_ci"], b["mean_ci"]
        if overlap(ia, ib):
            lines.append(f"- {a['arm']} [{ia[0]:.2f}, {ia[1]:.2f}] and {b['arm']} "
                         f"[{ib[0]:.2f}, {ib[1]:.2f}]: the intervals **overlap**; this run cannot "
                         "tell the two arms apart.")  # fmt: skip
        else:
            hi, lo = (a, b) if a["mean"] > b["mean"] else (b, a)
            lines.append(f"- {hi['arm']} ({hi['mean']:.2f}) scores above {lo['arm']} "
                         f"({lo['mean']:.2f}): the intervals do not overlap.")  # fmt: skip
    return lines


def write_ablation_report(results: dict[str, list[dict]], cfg, out: Path) -> Path:
    lines = ["# Ablations: data quantity, quality and diversity", ""]
    lines += [
        f"Base run config: `{Path(cfg.run).name}`; seeds {cfg.seeds} (scores of all seeds pooled "
        "per prompt). Every arm has the same training, sampling and judging settings; only its "
        "data differ. Score: the judge's 1-6 helpfulness of the fine-tuned model's answers to "
        "the test prompts, mean over prompts with a 95% bootstrap interval (prompts resampled).",
        "",
        "Arm settings: [arms.json](arms.json); numbers: [ablations.json](ablations.json).",
        "",
    ]
    scored = [r for rows in results.values() for r in rows if r["mean_ci"]]
    if (
        scored
        and len({(r["mean"], *r["mean_ci"]) for r in scored}) == 1
        and (scored[0]["mean_ci"][0] == scored[0]["mean_ci"][1])
    ):
        lines += [
            f"**Caution:** the judge gave every answer of every arm the same score "
            f"({scored[0]['mean']:.0f}); it does not tell these answers apart, so nothing below "
            "compares the arms. Use a stronger judge.",
            "",
        ]
    for ablation in ("quantity", "quality", "diversity"):
        rows = results.get(ablation)
        if not rows:
            continue
        png = f"{ablation}.png"
        plot(ablation, rows, out / png)
        lines += [f"## {TITLES[ablation]}", "", f"![{ablation}]({png})", ""]
        sources = ", ".join(
            f"[{run}/judge/likert-model/](" + f"{run}/judge/likert-model/verdicts.jsonl)"
            for r in rows
            for run in r["runs"]
        )
        lines += [f"Figure: from the Likert verdicts of {sources}.", ""]
        lines += [
            "| arm | examples | prompts | mean | 95% CI | runs |",
            "|---|---:|---:|---:|---|---|",
        ]
        for r in rows:
            mean = "-" if r["mean"] is None else f"{r['mean']:.2f}"
            ci = "-" if not r["mean_ci"] else f"[{r['mean_ci'][0]:.2f}, {r['mean_ci'][1]:.2f}]"
            runs = ", ".join(f"[{x}]({x}/report/report.md)" for x in r["runs"])
            lines.append(
                f"| {r['arm']} | {r['examples']} | {r['prompts']} | {mean} | {ci} | {runs} |"
            )
        lines += ["", *verdict_lines(rows), ""]
    text = "\n".join(lines).rstrip() + "\n"
    with atomic_write(out / "report.md") as f:
        f.write(text)
    with atomic_write(out / "report.html") as f:
        f.write(to_html(text, "Ablations"))
    return out / "report.md"

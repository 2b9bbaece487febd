"""The ablation report: mean Likert score per arm with 95% intervals (the paper's Figures 5 and 6),
a plain statement of which intervals overlap, where the arms were judged pairwise against a
baseline each arm's score (win + tie/2) and length-controlled win rate, and each arm's judge-free
measures with, where its run measured it, the token-distribution shift against the base."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

from limakit.core.files import atomic_write
from limakit.evaluation.metrics import Measure, PairwiseStats
from limakit.evaluation.summaries import LengthControlled
from limakit.run.run_report import to_html

TITLES = {
    "quantity": "Quantity: 2^k examples from the same pool",
    "quality": "Quality: filtered vs unfiltered, same size and source",
    "diversity": "Diversity: mixed vs homogeneous, same size",
    "backtranslation": "Back-translation: the seed alone vs seed + the pairs kept after each round",
    "custom": "Custom arms: the base run with each arm's own overrides",
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


class ArmPairwise(PairwiseStats, LengthControlled):
    """An arm's figures against one baseline, its seeds pooled: those of a pairwise summary,
    with the LC fit's ``formula`` (None: no fit) and ``n``."""


def pairwise_figures(rows: list[dict], *, resamples: int = 1000, seed: int = 0) -> None:
    """Replace each arm's ``pairwise`` (baseline -> verdict rows, seeds pooled) by its figures:
    win / tie / lose, score = win + tie/2 with a 95% interval, and the LC win rate with its 95%
    interval (fractions), or the reason it is n/a. When three or more arms were judged against
    the same baseline, the LC fit adds the instruction-difficulty term, estimated on the prompts
    they share (AlpacaEval's length_controlled_v1); with fewer, the minimal formula."""
    from limakit.evaluation import metrics
    from limakit.evaluation.lc import MIN_PAIRS, PREFERENCE, Judged, lc_table

    for baseline in sorted({b for r in rows for b in r.get("pairwise") or {}}):
        arms = [r for r in rows if (r.get("pairwise") or {}).get(baseline)]
        judged = [Judged(str(v["id"]), r["arm"], baseline, PREFERENCE.get(v["result"]),
                         int(v["len_a"]), int(v["len_b"]))
                  for r in arms for v in r["pairwise"][baseline]]  # fmt: skip
        lc = lc_table(judged, resamples=resamples, seed=seed, difficulty=len(arms) >= 3,
                      min_pairs=MIN_PAIRS)  # fmt: skip
        for r in arms:
            results = [v["result"] for v in r["pairwise"][baseline] if v["result"] != "invalid"]
            e = lc[r["arm"]]
            ci = e["lc_win_rate_ci"]
            figures: ArmPairwise = {
                **metrics.pairwise_stats(results, resamples=resamples, seed=seed),
                "lc_win_rate": None if e["lc_win_rate"] is None else e["lc_win_rate"] / 100,
                "lc_win_rate_ci": None if ci is None else [x / 100 for x in ci],
                "lc": {"reason": e["reason"], "formula": e.get("formula"), "n": e["n"],
                       "min_pairs": MIN_PAIRS},
            }  # fmt: skip
            r["pairwise"][baseline] = figures
    for r in rows:  # an arm judged against no baseline (or not pairwise) has nothing to show
        for b, v in list((r.get("pairwise") or {}).items()):
            if isinstance(v, list):
                del r["pairwise"][b]


def pairwise_plot(
    ablation: str, baseline: str, rows: list[tuple[str, ArmPairwise]], out: Path
) -> None:
    """Score and LC win rate per arm against one baseline, with their 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    xs = range(len(rows))
    score = [(f["score"], f["score_ci"]) for _arm, f in rows]
    lc = [(f["lc_win_rate"], f["lc_win_rate_ci"]) for _arm, f in rows]
    for values, dx, color, name in ((score, -0.1, "#2b6cb0", "score = win + tie/2"),
                                    (lc, 0.1, "#dd6b20", "LC win rate")):  # fmt: skip
        pts = [(x + dx, v, ci) for x, (v, ci) in zip(xs, values) if v is not None]
        if not pts:
            continue
        ax.errorbar([p[0] for p in pts], [100 * p[1] for p in pts],
                    yerr=[[100 * (p[1] - (p[2] or [p[1]])[0]) for p in pts],
                          [100 * ((p[2] or [0, p[1]])[1] - p[1]) for p in pts]],
                    fmt="o", capsize=4, color=color, label=name)  # fmt: skip
    ax.axhline(50, color="#a0aec0", lw=1, ls="--")
    ax.set_xticks(list(xs), [arm for arm, _f in rows])
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"% against {baseline}, 95% CI")
    ax.set_title(f"{TITLES[ablation]}: pairwise", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def pairwise_lines(ablation: str, rows: list[dict], out: Path) -> list[str]:
    """Per baseline: the figure and table of score and LC win rate per arm."""
    from limakit.evaluation.lc import MEANING
    from limakit.evaluation.report import _ci, _pct, lc_text, score_text

    lines = []
    for baseline in sorted({b for r in rows for b in r.get("pairwise") or {}}):
        arms = [r for r in rows if baseline in (r.get("pairwise") or {})]
        table: list[tuple[str, ArmPairwise]] = [(r["arm"], r["pairwise"][baseline]) for r in arms]
        png = f"{ablation}-pairwise-{baseline}.png"
        pairwise_plot(ablation, baseline, table, out / png)
        formulas = sorted({f for _arm, t in table if (f := t["lc"].get("formula"))})
        lines += [f"### Pairwise against {baseline}", "", f"![{ablation} pairwise]({png})", "",
                  "| arm | examples | pairs | score (win + tie/2) [95% CI] | LC win rate [95% CI] "
                  "| win [95% CI] | tie | lose |", "|---|---:|---:|---|---|---|---:|---:|"]  # fmt: skip
        for r, (arm, t) in zip(arms, table):
            lines.append(f"| {arm} | {r['examples']} | {t['n']} | {score_text(t)} | "
                         f"{lc_text(t)} | {_pct(t['win'])} {_ci(t['win_ci'])} | "
                         f"{_pct(t['tie'])} | {_pct(t['lose'])} |")  # fmt: skip
        lines += ["", f"{MEANING} LC formula: {', '.join(formulas) or 'none fitted'} "
                      "(with three or more arms against this baseline, an instruction-difficulty "
                      "term estimated on the prompts they share joins the fit).", ""]  # fmt: skip
    return lines


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


def _measure(m: Measure | None, share: bool) -> str:
    if m is None or m["value"] is None:
        return "-"
    lo, hi = m["ci"] or (m["value"], m["value"])
    if share:
        return f"{100 * m['value']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{m['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def checks_lines(rows: list[dict]) -> list[str]:
    """Per arm and run (seed): the judge-free measures of the fine-tuned model's answers, and its
    token-distribution shift against the base where the run measured it."""
    from limakit.evaluation.checks import MEASURES

    runs = [(r["arm"], c) for r in rows for c in r.get("checks") or []]
    names = {n for _, c in runs for n in c["measures"] or {}}
    shown = [n for n in MEASURES if n in names] + sorted(names - set(MEASURES))
    shift = [c["shift"] for _, c in runs if c["shift"]]
    if not shown and not shift:
        return []
    words = [MEASURES[n].words if n in MEASURES else n for n in shown]
    if shift:
        words += [f"unshifted vs {shift[0]['base']}", "shifted"]
    lines = ["### Judge-free measures of each arm's answers", "",
             "| arm | seed | " + " | ".join(words) + " |",
             "|---|---:|" + "---|" * len(words)]  # fmt: skip
    for arm, c in runs:
        measures = c["measures"] or {}
        cells = [_measure(measures.get(n), n not in MEASURES or MEASURES[n].share) for n in shown]
        if shift:
            cells += [_measure((c["shift"] or {}).get(k), True) for k in ("unshifted", "shifted")]
        lines.append(f"| {arm} | {c['seed']} | " + " | ".join(cells) + " |")
    sources = "`judge/checks.json`" + (" and `shift/shift.json`" if shift else "")
    lines += ["", f"From each run's {sources}; 95% intervals over prompts (measures) and over "
              "answers (shift). Shift: the share of answer tokens the base model ranks first "
              "(unshifted) or below third (shifted) given the same context.", ""]  # fmt: skip
    return lines


def write_ablation_report(results: dict[str, list[dict]], cfg, out: Path) -> Path:
    lines = ["# Ablations: " + ", ".join(a for a in TITLES if results.get(a)), ""]
    lines += [
        f"Base run config: `{Path(cfg.run).name}`; seeds {cfg.seeds} (scores of all seeds pooled "
        "per prompt). Every arm has the same training, sampling and judging settings; only its "
        "own overrides differ (its data, or a custom arm's settings). Score: the judge's 1-6 helpfulness of the fine-tuned model's answers to "
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
    for ablation in ("quantity", "quality", "diversity", "backtranslation", "custom"):
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
        lines += pairwise_lines(ablation, rows, out)
        lines += checks_lines(rows)
    text = "\n".join(lines).rstrip() + "\n"
    with atomic_write(out / "report.md") as f:
        f.write(text)
    with atomic_write(out / "report.html") as f:
        f.write(to_html(text, "Ablations"))
    return out / "report.md"

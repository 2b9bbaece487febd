"""Reports: Markdown + HTML with the paper's Figure-1 style Win / Tie / Lose bars and tables.

Folders of people's verdicts (``lima annotate export``) read like a judge's; with them the report
adds the agreement among the annotators and between their majority and each LLM judge of the
same two models. Every pairwise row says in words when its own figures undercut it.

>>> write_report([Path("out/lima-vs-gpt4"), Path("out/lima-rate")], Path("report"))  # doctest: +SKIP
PosixPath('report/report.md')
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typing_extensions import TypedDict

from limakit.core.errors import LimaError
from limakit.core.files import atomic_write
from limakit.evaluation.metrics import PairwiseStats
from limakit.evaluation.summaries import (
    JudgeSummary,
    LengthControlled,
    PairwiseSummary,
    SingleSummary,
    load_judge_summary,
)

COLORS = {"win": "#2b6cb0", "tie": "#a0aec0", "lose": "#e2e8f0"}


def load_summary(d: Path) -> JudgeSummary:
    """The checked ``summary.json`` of a judged folder (or of people's verdicts)."""
    path = Path(d) / "summary.json"
    if not path.exists():
        raise LimaError(
            f"{path}: not found ({d} is not a folder written by `lima judge`, nor people's "
            "verdicts from `lima annotate export` or `import-labelstudio` / `import-argilla`); a "
            "report needs no judge folder: leave it out to report on the other folders alone"
        )
    return load_judge_summary(path)


@dataclass(frozen=True)
class Comparison:
    """A pairwise folder as the report shows it: the label of its row, and its summary."""

    folder: Path
    label: str
    summary: PairwiseSummary


@dataclass(frozen=True)
class Judged:
    """The folders of a report, read: the pairwise comparisons and the rated answer files."""

    dirs: list[Path]
    pairs: list[Comparison]
    singles: list[SingleSummary]


def read_folders(dirs: Sequence[Path]) -> Judged:
    """Each folder's summary, checked; a pairwise one labelled "A vs B", with the folder's name
    too when the same two models were judged twice."""
    pairs: list[tuple[Path, PairwiseSummary]] = []
    singles: list[SingleSummary] = []
    for d in dirs:
        s = load_summary(d)
        if s["protocol"] == "pairwise":
            pairs.append((Path(d), s))
        else:
            singles.append(s)
    names = [f"{s['a']['model']} vs {s['b']['model']}" for _d, s in pairs]
    comparisons = [
        Comparison(d, name if names.count(name) == 1 else f"{name} ({d.name})", s)
        for name, (d, s) in zip(names, pairs)
    ]
    return Judged([Path(d) for d in dirs], comparisons, singles)


class Bar(TypedDict):
    """One bar of :func:`bars_png`: the win / tie / lose shares and the score of a comparison,
    and its LC win rate with its 95% interval (None: no LC figure)."""

    label: str
    win: float
    tie: float
    lose: float
    score: float
    lc_win_rate: float | None
    lc_win_rate_ci: list[float] | None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(ci: Sequence[float] | None, pct: bool = True) -> str:
    if not ci:
        return "-"
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]" if pct else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def lc_text(s: LengthControlled) -> str:
    """A pairwise summary's length-controlled win rate with its 95% interval, or why it has none.

    >>> lc_text({"lc_win_rate": 0.4, "lc_win_rate_ci": [0.3, 0.5]})
    '40.0% [30.0%, 50.0%]'
    >>> lc_text({"lc_win_rate": None, "lc": {"reason": "too few pairs (3 valid verdicts, 20 needed)"}})
    'n/a (too few pairs (3 valid verdicts, 20 needed))'
    """
    if s["lc_win_rate"] is None:
        return f"n/a ({s['lc']['reason'] or 'not computed'})"
    return f"{_pct(s['lc_win_rate'])} {_ci(s['lc_win_rate_ci'])}"


def score_text(s: PairwiseStats) -> str:
    """``score`` = win + tie/2 with its 95% interval."""
    return f"{_pct(s['score'])} {_ci(s['score_ci'])}"


def bars_png(pairs: list[Bar], out: Path, *, lc: bool = True) -> Path:
    """Stacked horizontal Win / Tie / Lose bars, one per comparison (the paper's Figure 1);
    ``lc``: also each pair's length-controlled win rate (or "LC n/a")."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.6 * len(pairs) + 1.8))
    labels = [s["label"] for s in pairs]
    for row, s in enumerate(pairs):
        left = 0.0
        for key, share in (("win", s["win"]), ("tie", s["tie"]), ("lose", s["lose"])):
            width = 100 * share
            ax.barh(row, width, left=left, color=COLORS[key], edgecolor="white",
                    label=key.capitalize() if row == 0 else None)  # fmt: skip
            if width >= 6:
                ax.text(left + width / 2, row, f"{width:.0f}%", ha="center", va="center",
                        color="white" if key == "win" else "black", fontsize=9)  # fmt: skip
            left += width
        ax.plot(100 * s["score"], row - 0.25, "D", color="black", ms=5,
                label="score = win + tie/2" if row == 0 else None)  # fmt: skip
        rate = s["lc_win_rate"]
        if rate is not None:
            lo, hi = s["lc_win_rate_ci"] or (rate, rate)
            x = 100 * rate
            ax.errorbar(x, row + 0.25, xerr=[[x - 100 * lo], [100 * hi - x]], fmt="o",
                        color="#dd6b20", capsize=3, ms=5,
                        label="LC win rate, 95% CI" if row == 0 else None)  # fmt: skip
        elif lc:
            ax.text(99, row + 0.3, "LC n/a", ha="right", va="center", fontsize=8)
    ax.set_yticks(range(len(pairs)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of prompts (judged in both orders; disagreement counts as a tie)")
    ax.legend(ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return out


def _table(header: list[str], rows: list[list]) -> tuple[list[str], list[list[str]]]:
    return header, [[str(c) for c in r] for r in rows]


def _md_table(table: tuple[list[str], list[list[str]]]) -> str:
    def cell(c: str) -> str:
        return c.replace("|", "\\|").replace("\n", " ")

    header, rows = table
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


Block = tuple[str, Any]  # (kind, content): a heading, paragraph, table or image


def _sections(judged: Judged, png: str | None, agreements: Sequence[dict] = ()) -> list[Block]:
    """(kind, text) blocks: ('h', heading), ('p', paragraph), ('t', markdown table), ('img', path)."""
    blocks: list[Block] = [("h1", "Evaluation report")]
    if judged.pairs:
        blocks.append(("h2", "Pairwise preference (Win / Tie / Lose for the first model)"))
        if png:
            blocks.append(("img", png))
        rows = []
        for c in judged.pairs:
            s = c.summary
            rows.append([
                c.label, s["n"], score_text(s), lc_text(s),
                f"{_pct(s['win'])} {_ci(s['win_ci'])}", f"{_pct(s['tie'])} {_ci(s['tie_ci'])}",
                f"{_pct(s['lose'])} {_ci(s['lose_ci'])}", _pct(s["consistency"]),
                s["invalid"], _pct(s["length_bias"]["longer_won"]),
                f"{s['judge']['model']} ({s['judge']['prompt']})",
                "; ".join(short for short, _long in cautions(s)) or "-",
            ])  # fmt: skip
        blocks.append(("t", _table(
            ["comparison", "n", "score (win + tie/2) [95% CI]", "LC win rate [95% CI]",
             "win [95% CI]", "tie", "lose", "consistency", "invalid", "longer won", "judge",
             "reading"], rows)))  # fmt: skip
        blocks.append(("p", lc_paragraph()))
        for c in judged.pairs:
            for _short, long in cautions(c.summary):
                blocks.append(("p", f"Caution, {c.label}: {long}"))
        for c in judged.pairs:
            cats = c.summary["categories"]
            if len(cats) > 1:
                blocks.append(("h3", f"{c.label} by category"))
                blocks.append(("t", _table(
                    ["category", "n", "score (win + tie/2)", "win", "tie", "lose"],
                    [[k, v["n"], _pct(v["win"] + v["tie"] / 2), _pct(v["win"]), _pct(v["tie"]),
                      _pct(v["lose"])] for k, v in cats.items()])))  # fmt: skip
    blocks += _single_blocks(judged.singles)
    blocks += agreement_blocks(agreements)
    blocks.append(("p", "Sources: " + ", ".join(f"`{d}`" for d in judged.dirs)))
    return blocks


def _single_blocks(singles: list[SingleSummary]) -> list[Block]:
    """The rating and Likert tables: one row per answer file, then its categories."""
    blocks: list[Block] = []
    for kind, title in (("rate", "Absolute rating (Fail / Pass / Excellent)"),
                        ("likert", "Helpfulness, 1-6 Likert")):  # fmt: skip
        group = [s for s in singles if s["protocol"] == kind]
        if not group:
            continue
        blocks.append(("h2", title))
        rows = []
        for s in group:
            dist = ", ".join(f"{k}: {v}" for k, v in s["distribution"].items())
            rows.append([s["answers"]["model"], s["prompts"], s["n"], _mean(s["mean"]),
                         _ci(s["mean_ci"], pct=False), dist, s["invalid"]])  # fmt: skip
        blocks.append(("t", _table(
            ["model", "prompts", "answers", "mean", "95% CI", "distribution", "invalid"], rows)))  # fmt: skip
        for s in group:
            cats = s["categories"]
            if len(cats) > 1:
                blocks.append(("h3", f"{s['answers']['model']} by category"))
                blocks.append(("t", _table(
                    ["category", "prompts", "mean", "95% CI"],
                    [[k, v["prompts"], _mean(v["mean"]), _ci(v["mean_ci"], pct=False)]
                     for k, v in cats.items()])))  # fmt: skip
    return blocks


def _mean(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def lc_paragraph() -> str:
    """The sentence every pairwise table carries under it, and the rule for "n/a"."""
    from limakit.evaluation.lc import MEANING, MIN_PAIRS

    return (
        f"{MEANING} Score is win + tie/2 (AlpacaEval's win rate). LC needs at least {MIN_PAIRS} "
        "valid verdicts and some variation in the length difference; without them it reads "
        "n/a, with the reason."
    )


def cautions(s: PairwiseSummary) -> list[tuple[str, str]]:
    """What a pairwise summary's own figures say about trusting it: (short, full sentence) pairs.

    A judge that agrees with itself across the two orders on under half the pairs is mostly
    following position, not content; a win-rate interval that holds 50% leaves the comparison
    undecided.

    >>> cautions({"consistency": 0.08, "win_ci": [0.1, 0.2], "n": 30})[0][0]
    'judge unreliable (consistency 8.0% < 50%)'
    """
    out = []
    c = s["consistency"]
    if c is not None and c < 0.5:
        out.append((
            f"judge unreliable (consistency {_pct(c)} < 50%)",
            f"the judge gave the same verdict in both answer orders on only {_pct(c)} of the "
            "pairs (below 50%), so its verdicts follow the answers' position more than their "
            "content; do not read this Win / Tie / Lose as a result.",
        ))  # fmt: skip
    ci = s["win_ci"]
    if ci and s["n"] and ci[0] <= 0.5 <= ci[1]:
        out.append((
            "win rate undecided (95% CI spans 50%)",
            f"the 95% interval of the win rate, {_ci(ci)}, includes 50%, so these pairs do "
            "not show whether the first model wins more or less than half the time.",
        ))  # fmt: skip
    return out


def _labels_of(d: Path) -> dict:
    """From a folder's verdicts.jsonl: {(id, sample): {rater: label}} with labels a / b / tie."""
    from limakit.core.files import read_jsonl_records
    from limakit.evaluation.agreement import RESULT_TO_LABEL

    path = Path(d) / "verdicts.jsonl"
    out: dict = {}
    for lineno, row in read_jsonl_records(path):
        result = row.get("result")
        if result == "invalid":
            continue
        if result not in RESULT_TO_LABEL or "id" not in row:
            raise LimaError(f"{path}:{lineno}: a verdict needs 'id' and a result win/tie/lose")
        rater = row.get("annotator") or "judge"
        out.setdefault((row["id"], row.get("sample", 0)), {})[rater] = RESULT_TO_LABEL[result]
    return out


def _models(c: Comparison) -> tuple[str, str]:
    return c.summary["a"]["model"], c.summary["b"]["model"]


def _agreements(pairs: list[Comparison]) -> list[dict]:
    """Agreement for every folder of people's verdicts: among them, and with each LLM judge
    folder that compares the same two models (either way round)."""
    from limakit.evaluation.agreement import against_judge, between_annotators

    people = [c for c in pairs if c.summary["judge"]["backend"] == "human"]
    judges = [c for c in pairs if c.summary["judge"]["backend"] != "human"]
    flip = {"a": "b", "b": "a", "tie": "tie"}
    out = []
    for c in people:
        labels = _labels_of(c.folder)
        out.append({"label": c.label, "kind": "people",
                    **between_annotators(labels)})  # fmt: skip
        models = _models(c)
        for j in judges:
            if _models(j) not in (models, models[::-1]):
                continue
            judged = {k: v["judge"] for k, v in _labels_of(j.folder).items() if "judge" in v}
            if _models(j) != models:
                judged = {k: flip[v] for k, v in judged.items()}
            out.append({"label": c.label, "kind": "judge", "judge": j.label,
                        **against_judge(labels, judged)})  # fmt: skip
    return out


def agreement_blocks(agreements: Sequence[dict]) -> list[Block]:
    if not agreements:
        return []
    rows = []
    for a in agreements:
        who = (
            f"annotators with each other ({a['annotators']} people)"
            if a["kind"] == "people"
            else f"annotators' majority vs {a['judge']}"
        )
        rows.append([
            a["label"], who, a["items"], a["comparisons"],
            f"{_pct(a['accuracy'])} {_ci(a['accuracy_ci'])}",
            "-" if a["kappa"] is None else f"{a['kappa']:.2f} {_ci(a['kappa_ci'], pct=False)}",
        ])  # fmt: skip
    return [
        ("h2", "Agreement between people and judges"),
        ("p", "Tie-discounted accuracy (the LIMA paper's measure: 1 when two labels match, 0.5 "
              "when exactly one is a tie, 0 otherwise) and Cohen's kappa, with 95% bootstrap "
              "intervals over pairs. A judge's label for a pair is its result over both orders (a "
              "disagreement between the orders is a tie). The paper found 82% between crowd "
              "workers and 78% between crowd workers and GPT-4."),
        ("t", _table(["people", "between", "pairs", "comparisons", "accuracy [95% CI]",
                      "kappa [95% CI]"], rows)),
    ]  # fmt: skip


def console_lines(pairs: list[Comparison], agreements: Sequence[dict]) -> list[str]:
    """The short account ``lima report`` prints: each comparison, its cautions, the agreement."""
    lines = []
    for c in pairs:
        s = c.summary
        lines.append(
            f"{c.label} ({s['judge']['model']}): score {score_text(s)}, "
            f"LC win rate {lc_text(s)}, win {_pct(s['win'])} {_ci(s['win_ci'])}, "
            f"tie {_pct(s['tie'])}, lose {_pct(s['lose'])}, n {s['n']}, "
            f"consistency {_pct(s['consistency'])}"
        )
        lines += [f"  caution: {long}" for _short, long in cautions(s)]
    for a in agreements:
        who = "annotators" if a["kind"] == "people" else f"majority vs {a['judge']}"
        kappa = "-" if a["kappa"] is None else f"{a['kappa']:.2f}"
        lines.append(
            f"agreement, {a['label']}, {who}: {_pct(a['accuracy'])} {_ci(a['accuracy_ci'])} "
            f"tie-discounted, kappa {kappa}, {a['comparisons']} comparisons"
        )
    if pairs:
        from limakit.evaluation.lc import MEANING

        lines.append(f"score = win + tie/2. {MEANING}")
    return lines


def _markdown(blocks: list[Block]) -> str:
    out = []
    for kind, text in blocks:
        if kind.startswith("h"):
            out.append("#" * int(kind[1]) + " " + text)
        elif kind == "img":
            out.append(f"![Win / Tie / Lose]({text})")
        elif kind == "t":
            out.append(_md_table(text))
        else:
            out.append(text)
    return "\n\n".join(out) + "\n"


def _html(blocks: list[Block]) -> str:
    body = []
    for kind, text in blocks:
        if kind.startswith("h"):
            body.append(f"<{kind}>{html.escape(text)}</{kind}>")
        elif kind == "img":
            body.append(f'<img src="{html.escape(text)}" alt="Win / Tie / Lose bars">')
        elif kind == "t":
            head, rows = text
            cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
            trs = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
            )
            body.append(f"<table><thead><tr>{cells}</tr></thead><tbody>{trs}</tbody></table>")
        else:
            body.append(f"<p>{html.escape(text)}</p>")
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
        "th{background:#f4f4f4}img{max-width:100%}"
    )
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>Evaluation report</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(dirs: list[Path], out: Path) -> Path:
    """Write ``out/report.md``, ``out/report.html`` and ``out/winrates.png``; return report.md."""
    return report_with_lines(dirs, out)[0]


def report_with_lines(dirs: list[Path], out: Path) -> tuple[Path, list[str]]:
    """:func:`write_report`, also returning the lines ``lima report`` prints."""
    dirs = [Path(d) for d in dirs]
    if not dirs:
        raise LimaError("report: give at least one folder written by `lima judge`")
    out = Path(out)
    judged = read_folders(dirs)
    bars: list[Bar] = [
        {
            "label": c.label,
            "win": c.summary["win"],
            "tie": c.summary["tie"],
            "lose": c.summary["lose"],
            "score": c.summary["score"],
            "lc_win_rate": c.summary["lc_win_rate"],
            "lc_win_rate_ci": c.summary["lc_win_rate_ci"],
        }
        for c in judged.pairs
    ]
    png = bars_png(bars, out / "winrates.png").name if bars else None
    agreements = _agreements(judged.pairs)
    blocks = _sections(judged, png, agreements)
    with atomic_write(out / "report.md") as f:
        f.write(_markdown(blocks))
    with atomic_write(out / "report.html") as f:
        f.write(_html(blocks))
    return out / "report.md", console_lines(judged.pairs, agreements)

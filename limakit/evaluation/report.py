"""Reports: Markdown + HTML with the paper's Figure-1 style Win / Tie / Lose bars and tables.

Folders of people's verdicts (``lima annotate export``) read like a judge's; with them the report
adds the agreement among the annotators and between their majority and each LLM judge of the
same two models. Every pairwise row says in words when its own figures undercut it.

>>> write_report([Path("out/lima-vs-gpt4"), Path("out/lima-rate")], Path("report"))  # doctest: +SKIP
PosixPath('report/report.md')
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from limakit.core.errors import LimaError
from limakit.core.files import atomic_write, read_json

COLORS = {"win": "#2b6cb0", "tie": "#a0aec0", "lose": "#e2e8f0"}


def load_summary(d: Path) -> dict:
    path = Path(d) / "summary.json"
    if not path.exists():
        raise LimaError(
            f"{path}: not found ({d} is not a folder written by `lima judge`, nor people's "
            "verdicts from `lima annotate export` or `import-labelstudio` / `import-argilla`); a "
            "report needs no judge folder: leave it out to report on the other folders alone"
        )
    s = read_json(path)
    if s.get("protocol") not in ("pairwise", "rate", "likert"):
        raise LimaError(f"{path}: unknown protocol {s.get('protocol')!r}")
    return s


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(ci: list | None, pct: bool = True) -> str:
    if not ci:
        return "-"
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]" if pct else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def lc_text(s: dict) -> str:
    """A pairwise summary's length-controlled win rate with its 95% interval, or why it has none.

    >>> lc_text({"lc_win_rate": 0.4, "lc_win_rate_ci": [0.3, 0.5]})
    '40.0% [30.0%, 50.0%]'
    >>> lc_text({"lc_win_rate": None, "lc": {"reason": "too few pairs (3 valid verdicts, 20 needed)"}})
    'n/a (too few pairs (3 valid verdicts, 20 needed))'
    """
    if s.get("lc_win_rate") is None:
        return f"n/a ({(s.get('lc') or {}).get('reason') or 'not computed'})"
    return f"{_pct(s['lc_win_rate'])} {_ci(s.get('lc_win_rate_ci'))}"


def score_text(s: dict) -> str:
    """``score`` = win + tie/2 with its 95% interval."""
    return f"{_pct(s.get('score'))} {_ci(s.get('score_ci'))}"


def bars_png(pairs: list[dict], out: Path, *, lc: bool = True) -> Path:
    """Stacked horizontal Win / Tie / Lose bars, one per comparison (the paper's Figure 1);
    ``lc``: also each pair's length-controlled win rate (or "LC n/a")."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.6 * len(pairs) + 1.8))
    labels = [s["label"] for s in pairs]
    for row, s in enumerate(pairs):
        left = 0.0
        for key in ("win", "tie", "lose"):
            width = 100 * s[key]
            ax.barh(row, width, left=left, color=COLORS[key], edgecolor="white",
                    label=key.capitalize() if row == 0 else None)  # fmt: skip
            if width >= 6:
                ax.text(left + width / 2, row, f"{width:.0f}%", ha="center", va="center",
                        color="white" if key == "win" else "black", fontsize=9)  # fmt: skip
            left += width
        ax.plot(100 * s["score"], row - 0.25, "D", color="black", ms=5,
                label="score = win + tie/2" if row == 0 else None)  # fmt: skip
        if s.get("lc_win_rate") is not None:
            lo, hi = s.get("lc_win_rate_ci") or (s["lc_win_rate"],) * 2
            lc = 100 * s["lc_win_rate"]
            ax.errorbar(lc, row + 0.25, xerr=[[lc - 100 * lo], [100 * hi - lc]], fmt="o",
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


def _sections(
    dirs: list[Path], summaries: list[dict], png: str | None, agreements: list[dict] = ()
) -> list[tuple[str, Any]]:
    """(kind, text) blocks: ('h', heading), ('p', paragraph), ('t', markdown table), ('img', path)."""
    blocks: list[tuple[str, str]] = [("h1", "Evaluation report")]
    pairs = [(d, s) for d, s in zip(dirs, summaries) if s["protocol"] == "pairwise"]
    singles = [(d, s) for d, s in zip(dirs, summaries) if s["protocol"] != "pairwise"]
    if pairs:
        blocks.append(("h2", "Pairwise preference (Win / Tie / Lose for the first model)"))
        if png:
            blocks.append(("img", png))
        rows = []
        for _d, s in pairs:
            lb = s.get("length_bias", {}).get("longer_won")
            rows.append([
                s["label"], s["n"], score_text(s), lc_text(s),
                f"{_pct(s['win'])} {_ci(s.get('win_ci'))}", f"{_pct(s['tie'])} {_ci(s.get('tie_ci'))}",
                f"{_pct(s['lose'])} {_ci(s.get('lose_ci'))}", _pct(s.get("consistency")),
                s.get("invalid", 0), _pct(lb), f"{s['judge']['model']} ({s['judge']['prompt']})",
                "; ".join(short for short, _long in cautions(s)) or "-",
            ])  # fmt: skip
        blocks.append(("t", _table(
            ["comparison", "n", "score (win + tie/2) [95% CI]", "LC win rate [95% CI]",
             "win [95% CI]", "tie", "lose", "consistency", "invalid", "longer won", "judge",
             "reading"], rows)))  # fmt: skip
        blocks.append(("p", lc_paragraph()))
        for _d, s in pairs:
            for _short, long in cautions(s):
                blocks.append(("p", f"Caution, {s['label']}: {long}"))
        for _d, s in pairs:
            cats = s.get("categories") or {}
            if len(cats) > 1:
                blocks.append(("h3", f"{s['label']} by category"))
                blocks.append(("t", _table(
                    ["category", "n", "score (win + tie/2)", "win", "tie", "lose"],
                    [[c, v["n"], _pct(v["win"] + v["tie"] / 2), _pct(v["win"]), _pct(v["tie"]),
                      _pct(v["lose"])] for c, v in cats.items()])))  # fmt: skip
    for kind, title in (("rate", "Absolute rating (Fail / Pass / Excellent)"),
                        ("likert", "Helpfulness, 1-6 Likert")):  # fmt: skip
        group = [s for _d, s in singles if s["protocol"] == kind]
        if not group:
            continue
        blocks.append(("h2", title))
        rows = []
        for s in group:
            dist = ", ".join(f"{k}: {v}" for k, v in s["distribution"].items())
            mean = "-" if s["mean"] is None else f"{s['mean']:.2f}"
            rows.append([s["answers"]["model"], s["prompts"], s["n"], mean,
                         _ci(s.get("mean_ci"), pct=False), dist, s.get("invalid", 0)])  # fmt: skip
        blocks.append(("t", _table(
            ["model", "prompts", "answers", "mean", "95% CI", "distribution", "invalid"], rows)))  # fmt: skip
        for s in group:
            cats = s.get("categories") or {}
            if len(cats) > 1:
                blocks.append(("h3", f"{s['answers']['model']} by category"))
                blocks.append(("t", _table(
                    ["category", "prompts", "mean", "95% CI"],
                    [[c, v["prompts"], f"{v['mean']:.2f}", _ci(v.get("mean_ci"), pct=False)]
                     for c, v in cats.items()])))  # fmt: skip
    blocks += agreement_blocks(agreements)
    blocks.append(("p", "Sources: " + ", ".join(f"`{d}`" for d in dirs)))
    return blocks


def lc_paragraph() -> str:
    """The sentence every pairwise table carries under it, and the rule for "n/a"."""
    from limakit.evaluation.lc import MEANING, MIN_PAIRS

    return (
        f"{MEANING} Score is win + tie/2 (AlpacaEval's win rate). LC needs at least {MIN_PAIRS} "
        "valid verdicts and some variation in the length difference; without them it reads "
        "n/a, with the reason."
    )


def cautions(s: dict) -> list[tuple[str, str]]:
    """What a pairwise summary's own figures say about trusting it: (short, full sentence) pairs.

    A judge that agrees with itself across the two orders on under half the pairs is mostly
    following position, not content; a win-rate interval that holds 50% leaves the comparison
    undecided.

    >>> cautions({"consistency": 0.08, "win_ci": [0.1, 0.2]})[0][0]
    'judge unreliable (consistency 8.0% < 50%)'
    """
    out = []
    c = s.get("consistency")
    if c is not None and c < 0.5:
        out.append((
            f"judge unreliable (consistency {_pct(c)} < 50%)",
            f"the judge gave the same verdict in both answer orders on only {_pct(c)} of the "
            "pairs (below 50%), so its verdicts follow the answers' position more than their "
            "content; do not read this Win / Tie / Lose as a result.",
        ))  # fmt: skip
    ci = s.get("win_ci")
    if ci and s.get("n") and ci[0] <= 0.5 <= ci[1]:
        out.append((
            "win rate undecided (95% CI spans 50%)",
            f"the 95% interval of the win rate, {_ci(ci)}, includes 50%, so these pairs do "
            "not show whether the first model wins more or less than half the time.",
        ))  # fmt: skip
    return out


def _labels_of(d: Path, s: dict) -> dict:
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


def _agreements(dirs: list[Path], summaries: list[dict]) -> list[dict]:
    """Agreement for every folder of people's verdicts: among them, and with each LLM judge
    folder that compares the same two models (either way round)."""
    from limakit.evaluation.agreement import against_judge, between_annotators

    pairwise = [(d, s) for d, s in zip(dirs, summaries) if s["protocol"] == "pairwise"]
    people = [(d, s) for d, s in pairwise if s["judge"].get("backend") == "human"]
    judges = [(d, s) for d, s in pairwise if s["judge"].get("backend") != "human"]
    flip = {"a": "b", "b": "a", "tie": "tie"}
    out = []
    for d, s in people:
        labels = _labels_of(d, s)
        out.append({"label": s["label"], "kind": "people",
                    **between_annotators(labels)})  # fmt: skip
        models = (s["a"]["model"], s["b"]["model"])
        for jd, js in judges:
            jmodels = (js["a"]["model"], js["b"]["model"])
            if jmodels not in (models, models[::-1]):
                continue
            judged = {k: v["judge"] for k, v in _labels_of(jd, js).items() if "judge" in v}
            if jmodels != models:
                judged = {k: flip[v] for k, v in judged.items()}
            out.append({"label": s["label"], "kind": "judge", "judge": js["label"],
                        **against_judge(labels, judged)})  # fmt: skip
    return out


def agreement_blocks(agreements: list[dict]) -> list[tuple[str, Any]]:
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


def console_lines(summaries: list[dict], agreements: list[dict]) -> list[str]:
    """The short account ``lima report`` prints: each comparison, its cautions, the agreement."""
    lines = []
    for s in summaries:
        if s["protocol"] != "pairwise":
            continue
        lines.append(
            f"{s['label']} ({s['judge']['model']}): score {score_text(s)}, "
            f"LC win rate {lc_text(s)}, win {_pct(s['win'])} {_ci(s.get('win_ci'))}, "
            f"tie {_pct(s['tie'])}, lose {_pct(s['lose'])}, n {s['n']}, "
            f"consistency {_pct(s.get('consistency'))}"
        )
        lines += [f"  caution: {long}" for _short, long in cautions(s)]
    for a in agreements:
        who = "annotators" if a["kind"] == "people" else f"majority vs {a['judge']}"
        kappa = "-" if a["kappa"] is None else f"{a['kappa']:.2f}"
        lines.append(
            f"agreement, {a['label']}, {who}: {_pct(a['accuracy'])} {_ci(a['accuracy_ci'])} "
            f"tie-discounted, kappa {kappa}, {a['comparisons']} comparisons"
        )
    if any(s["protocol"] == "pairwise" for s in summaries):
        from limakit.evaluation.lc import MEANING

        lines.append(f"score = win + tie/2. {MEANING}")
    return lines


def _markdown(blocks: list[tuple[str, Any]]) -> str:
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


def _html(blocks: list[tuple[str, Any]]) -> str:
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
    summaries = [load_summary(d) for d in dirs]
    names = [f"{s['a']['model']} vs {s['b']['model']}" for s in summaries if "a" in s]
    for d, s in zip(dirs, summaries):
        if s["protocol"] == "pairwise":
            s["label"] = f"{s['a']['model']} vs {s['b']['model']}"
            if names.count(s["label"]) > 1:  # same models judged twice: name the folder too
                s["label"] += f" ({d.name})"
    pairs = [s for s in summaries if s["protocol"] == "pairwise"]
    png = bars_png(pairs, out / "winrates.png").name if pairs else None
    agreements = _agreements(dirs, summaries)
    blocks = _sections(dirs, summaries, png, agreements)
    with atomic_write(out / "report.md") as f:
        f.write(_markdown(blocks))
    with atomic_write(out / "report.html") as f:
        f.write(_html(blocks))
    return out / "report.md", console_lines(summaries, agreements)

"""MT-Bench's single-answer grading: a 1-10 grade per (model, question, turn), FastChat's way.

Grades go to ``OUT/model_judgment/<judge>_single.jsonl`` with FastChat's fields (``question_id,
model, judge: [judge, prompt name], user_prompt, judgment, score, turn, tstamp``), one line per
grade, appended as each arrives. A reply without a rating has ``score`` -1 (counted, never
averaged), as in FastChat. The summary gives the mean per category and turn with 95% bootstrap
intervals; ``radar-<model>.png`` draws the categories.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from limakit.core.files import append_jsonl, drop_cut_line, read_jsonl_records, write_json
from limakit.evaluation.mtbench.answering import collect_answers
from limakit.evaluation.mtbench.asking import ask_into, require_openai_judge
from limakit.evaluation.mtbench.files import (
    grading_inputs,
    judgment_file,
    safe_name,
)
from limakit.evaluation.mtbench.matches import MatchSingle, single_matches
from limakit.evaluation.summaries import (
    AnswersOnly,
    MtBenchSummary,
    MtCounts,
    MtModel,
    MtStat,
    MtTurns,
)
from limakit.judging.runner import Outcome

_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def parse_rating(text: str) -> float:
    """FastChat's rating: the first ``[[N]]``, else the first ``[N]``; -1 when there is none or
    it is outside 1-10.

    >>> parse_rating("Good. Rating: [[8]]"), parse_rating("[7.5]"), parse_rating("no idea")
    (8.0, 7.5, -1)
    """
    m = _RATING.search(text or "") or _RATING_BACKUP.search(text or "")
    if not m:
        return -1
    value = float(m.group(1))
    return value if 1 <= value <= 10 else -1


def rating_label(text: str) -> str | None:
    """A single grade as the judge loop's label: the rating, or None without one.

    >>> rating_label("Rating: [[7.5]]"), rating_label("no idea")
    ('7.5', None)
    """
    score = parse_rating(text)
    return None if score == -1 else repr(score)


def judge_single(
    out_dir: str | os.PathLike,
    questions: list[dict],
    answers: dict[str, dict],
    cfg,
    prompts: dict[str, dict],
    refs: dict,
) -> MtCounts:
    """Grade every (model, question, turn) not yet in the judgment file; returns counts."""
    require_openai_judge(cfg)
    path = judgment_file(Path(out_dir), cfg.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()  # there even when nothing is left to judge: the summary reads it
    done = set()
    drop_cut_line(path)  # a killed run cut its last line: graded again
    for _, row in read_jsonl_records(path):
        done.add((row["question_id"], row["model"], row["turn"]))
    matches = [
        m
        for m in single_matches(questions, answers, prompts, refs)
        if (m.question_id, m.model, m.turn) not in done
    ]
    counts: MtCounts = {"judged": 0, "unparsable": 0, "skipped": len(done), "errors": 0}
    if not matches:
        return counts

    def on_reply(f: IO[str], m: MatchSingle, o: Outcome) -> None:
        score = -1 if o.label is None else float(o.label)
        counts["judged"] += 1
        counts["unparsable"] += score == -1
        append_jsonl(
            f,
            {
                "question_id": m.question_id,
                "model": m.model,
                "judge": [cfg.model, m.prompt["name"]],
                "user_prompt": m.user_prompt,
                "judgment": o.raw[-1],
                "score": score,
                "turn": m.turn,
                "tstamp": time.time(),
            },
        )

    what = f"MT-Bench ({len(matches)} grades)"
    ask_into(path, matches, rating_label, cfg, out_dir, on_reply, what, counts)
    return counts


# ---------------------------------------------------------------- results


def summarise(
    judgment_path: Path, questions: list[dict], *, resamples: int = 1000, seed: int = 0
) -> dict[str, MtModel]:
    """Per model: mean score per category and turn with 95% bootstrap intervals over questions,
    per turn, overall (FastChat's average over both turns), and the unparsable count."""
    from limakit.evaluation.metrics import bootstrap_ci

    category = {q["question_id"]: q["category"] for q in questions}
    scores: dict[str, list[dict]] = defaultdict(list)
    for _, row in read_jsonl_records(judgment_path, resumable=True):
        if row["question_id"] in category:
            scores[row["model"]].append(row)

    def stat(values: list[float]) -> MtStat:
        if not values:
            return {"mean": None, "ci": None, "n": 0}
        mean = sum(values) / len(values)
        ci = bootstrap_ci(values, resamples=resamples, seed=seed)
        return {"mean": round(mean, 4), "ci": ci, "n": len(values)}

    out: dict[str, MtModel] = {}
    for model, rows in sorted(scores.items()):
        valid = [r for r in rows if r["score"] != -1]
        cats: dict[str, MtTurns] = {}
        for cat in sorted({category[r["question_id"]] for r in rows}):
            in_cat = [r for r in valid if category[r["question_id"]] == cat]
            cats[cat] = {
                "turn1": stat([r["score"] for r in in_cat if r["turn"] == 1]),
                "turn2": stat([r["score"] for r in in_cat if r["turn"] == 2]),
                "both": stat([r["score"] for r in in_cat]),
            }
        out[model] = {
            "turn1": stat([r["score"] for r in valid if r["turn"] == 1]),
            "turn2": stat([r["score"] for r in valid if r["turn"] == 2]),
            "overall": stat([r["score"] for r in valid]),
            "judged": len(rows),
            "unparsable": len(rows) - len(valid),
            "categories": cats,
        }
    return out


def table_lines(summary: dict[str, MtModel]) -> list[str]:
    """A plain-text table per model: category x turn with intervals, then the overall mean."""

    def cell(s: MtStat) -> str:
        if s["mean"] is None or s["ci"] is None:
            return "-"
        return f"{s['mean']:.2f} [{s['ci'][0]:.2f}, {s['ci'][1]:.2f}]"

    lines = []
    for model, s in summary.items():
        lines.append(f"{model}")
        lines.append(f"  {'category':12s} {'turn 1':>20s} {'turn 2':>20s} {'both':>20s}")
        for cat, c in s["categories"].items():
            lines.append(
                f"  {cat:12s} {cell(c['turn1']):>20s} {cell(c['turn2']):>20s} {cell(c['both']):>20s}"
            )
        lines.append(
            f"  {'all':12s} {cell(s['turn1']):>20s} {cell(s['turn2']):>20s} {cell(s['overall']):>20s}"
        )
        gaps = s.get("unanswered")
        lines.append(
            f"  MT-Bench score {cell(s['overall'])} over {s['overall']['n']} grades; "
            f"{s['unparsable']} replies without a rating (score -1, left out)"
            + (
                f"; {gaps} of {s['questions']} questions unanswered by {model} (not graded)"
                if gaps
                else ""
            )
        )
    return lines


def radar_plot(model: str, s: MtModel, out: Path) -> Path:
    """Mean score per category (both turns) on a 0-10 radar, as FastChat shows MT-Bench."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    both = {c: v["both"]["mean"] for c, v in s["categories"].items()}
    cats = [c for c, mean in both.items() if mean is not None]
    values = [mean for mean in both.values() if mean is not None]
    fig = plt.figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot(111, projection="polar")
    if cats:
        angles = [2 * math.pi * i / len(cats) for i in range(len(cats))]
        ax.plot(angles + angles[:1], values + values[:1], linewidth=2)
        ax.fill(angles + angles[:1], values + values[:1], alpha=0.25)
        ax.set_xticks(angles)
        ax.set_xticklabels(cats)
    ax.set_ylim(0, 10)
    overall = s["overall"]["mean"]
    ax.set_title(f"MT-Bench: {model} ({'-' if overall is None else f'{overall:.2f}'})")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def run_mtbench(
    out_dir: str | os.PathLike,
    *,
    model=None,
    model_id: str | None = None,
    judge=None,
    questions_path: str | os.PathLike | None = None,
    judge_prompts_path: str | os.PathLike | None = None,
    reference_path: str | os.PathLike | None = None,
    other_answers: Sequence[str | os.PathLike] = (),
    config=None,
    seed: int = 0,
    batch_size: int = 16,
    dtype: str = "auto",
    device: str | None = "auto",
    progress: bool = True,
) -> AnswersOnly | MtBenchSummary:
    """Answer (when ``model`` is given), grade (when ``judge`` is given) and summarise."""
    out_dir = Path(out_dir)
    found, questions, answer_files = collect_answers(
        out_dir,
        model=model,
        model_id=model_id,
        questions_path=questions_path,
        other_answers=list(other_answers),
        config=config,
        seed=seed,
        batch_size=batch_size,
        dtype=dtype,
        device=device,
        progress=progress,
    )
    files: AnswersOnly = {
        "questions": found["questions"],
        "answers": found["answers"],
        "answers_from": found["answers_from"],
    }
    if judge is None:
        return files
    answers, prompts, refs = grading_inputs(answer_files, judge_prompts_path, reference_path)
    counts = judge_single(out_dir, questions, answers, judge, prompts, refs)
    jpath = judgment_file(out_dir, judge.model)
    summary = summarise(jpath, questions, resamples=judge.bootstrap, seed=judge.seed)
    for name, by_q in answers.items():
        if name in summary:  # the file may also hold grades of models not given this time
            summary[name]["questions"] = len(questions)
            summary[name]["unanswered"] = sum(q["question_id"] not in by_q for q in questions)
    for name in summary:
        radar_plot(name, summary[name], out_dir / f"radar-{safe_name(name)}.png")
    result: MtBenchSummary = {
        **files,
        "judge": {"model": judge.model, "file": str(jpath)},
        "counts": counts,
        "models": summary,
    }
    write_json(out_dir / "summary.json", result)
    return result

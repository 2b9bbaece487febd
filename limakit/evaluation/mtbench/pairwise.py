"""MT-Bench's pairwise modes, FastChat's way: ``pairwise-baseline`` and ``pairwise-all``.

Each (question, turn) of two models is judged twice with FastChat's pair prompts (``pair-v2``;
``pair-math-v1`` against the reference answer for math, reasoning and coding; their multi-turn
forms for turn 2): game 1 shows model 1 as assistant A, game 2 shows model 2 as A. The judge ends
with ``[[A]]``, ``[[B]]`` or ``[[C]]`` (a tie); a reply with none of them is an ``error``.

Counting follows FastChat's ``show_result.py``: a row with an error in either game is left out
(and counted); a win needs both games to name the same model; a tie in game 1 or games that
disagree count as a tie for both models. ``win_rate_adjusted`` counts a tie as half a win.

Rows go to ``OUT/model_judgment/<judge>_pair.jsonl`` with FastChat's fields (``question_id,
model_1, model_2, g1_winner, g2_winner, judge, g1_user_prompt, g1_judgment, g2_user_prompt,
g2_judgment, turn, tstamp``), one per (question, pair, turn), written once both games are in, so
FastChat's loaders and scripts read them and a rerun asks only for what is missing.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from typing import IO

from limakit.core.errors import LimaError
from limakit.core.files import append_jsonl, drop_cut_line, read_jsonl_records, write_json
from limakit.evaluation.mtbench.answering import collect_answers
from limakit.evaluation.mtbench.asking import ask_into, require_openai_judge
from limakit.evaluation.mtbench.files import (
    grading_inputs,
    judgment_file,
    safe_name,
)
from limakit.evaluation.mtbench.matches import MatchPair, pair_matches
from limakit.evaluation.summaries import MtBenchPairSummary, MtCounts, MtPairStats
from limakit.judging.runner import Outcome

MODES = ("pairwise-baseline", "pairwise-all")
DEFAULT_BASELINE = "gpt-3.5-turbo"  # FastChat's --baseline-model
GAME_WINNER = {1: {"A": "model_1", "B": "model_2"}, 2: {"A": "model_2", "B": "model_1"}}


def parse_verdict(text: str) -> str:
    """FastChat's pair verdict: ``A``, ``B``, ``tie`` or ``error``, looked for in that order.

    >>> parse_verdict("B is clearer. [[B]]"), parse_verdict("[[C]]"), parse_verdict("A wins")
    ('B', 'tie', 'error')
    """
    text = text or ""
    for mark, verdict in (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")):
        if mark in text:
            return verdict
    return "error"


def verdict_label(text: str) -> str | None:
    """A game's verdict as the judge loop's label: ``A``, ``B``, ``tie``, or None without one."""
    verdict = parse_verdict(text)
    return None if verdict == "error" else verdict


def pairs_of(models: list[str], mode: str, baseline: str = DEFAULT_BASELINE) -> list[tuple]:
    """The (model_1, model_2) pairs a mode judges, in FastChat's order."""
    if mode not in MODES:
        raise LimaError(f"unknown pairwise mode {mode!r} (choose {', '.join(MODES)})")
    if mode == "pairwise-baseline":
        if baseline not in models:
            raise LimaError(
                f"the baseline {baseline!r} has no answers: give its answer file with --answers "
                f"(FastChat names a model by its file, {baseline}.jsonl) or choose another "
                f"--baseline-model among {', '.join(models)}"
            )
        pairs = [(m, baseline) for m in models if m != baseline]
    else:
        pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1 :]]
    if not pairs:
        raise LimaError(f"{mode} needs answers of two models at least (got {', '.join(models)})")
    return pairs


def game_key(qid, m1: str, m2: str, turn: int) -> tuple:
    """A row's identity whichever model is model_1 (FastChat's loader normalises the same way):
    a row judged as (a, b) is not judged again as (b, a), nor counted twice."""
    return (qid, *sorted((m1, m2)), turn)


def judge_pairwise(
    out_dir: str | os.PathLike,
    questions: list[dict],
    answers: dict[str, dict],
    cfg,
    prompts: dict[str, dict],
    refs: dict,
    pairs: list[tuple[str, str]],
) -> MtCounts:
    """Judge every (question, pair, turn) not yet in the pair file, both games; returns counts."""
    require_openai_judge(cfg)
    path = judgment_file(Path(out_dir), cfg.model, "pair")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()  # there even when nothing is left to judge: the summary reads it
    done = set()
    drop_cut_line(path)  # a killed run cut its last line: judged again
    for _, row in read_jsonl_records(path):
        done.add(game_key(row["question_id"], row["model_1"], row["model_2"], row["turn"]))
    matches, skipped = [], set()
    for m in pair_matches(questions, answers, prompts, refs, pairs):
        key = game_key(m.question_id, m.model_1, m.model_2, m.turn)
        if key in done:
            skipped.add(key)
        else:
            matches.append(m)
    counts: MtCounts = {"judged": 0, "unparsable": 0, "skipped": len(skipped), "errors": 0}
    if not matches:
        return counts
    games: dict[tuple, dict[int, tuple[MatchPair, Outcome]]] = defaultdict(dict)

    def on_reply(f: IO[str], m: MatchPair, o: Outcome) -> None:
        row_key = game_key(m.question_id, m.model_1, m.model_2, m.turn)
        games[row_key][m.game] = (m, o)
        if len(games[row_key]) < 2:
            return  # the row is written once both games are in
        both = games.pop(row_key)
        row = {"question_id": m.question_id, "model_1": m.model_1, "model_2": m.model_2}
        for game in (1, 2):
            verdict = both[game][1].label or "error"
            counts["unparsable"] += verdict == "error"
            row[f"g{game}_winner"] = GAME_WINNER[game].get(verdict, verdict)
        row["judge"] = [cfg.model, m.prompt["name"]]
        for game in (1, 2):
            row[f"g{game}_user_prompt"] = both[game][0].user_prompt
            row[f"g{game}_judgment"] = both[game][1].raw[-1]
        row.update({"turn": m.turn, "tstamp": time.time()})
        counts["judged"] += 1
        append_jsonl(f, row)

    what = f"MT-Bench pairwise ({len(matches)} games)"
    ask_into(path, matches, verdict_label, cfg, out_dir, on_reply, what, counts)
    counts["incomplete"] = len(games)  # rows with one game in: asked again by a rerun
    return counts


# ---------------------------------------------------------------- results


def result_for(row: dict, model: str) -> str:
    """``win``, ``tie`` or ``lose`` for ``model`` in a row without errors (FastChat's rule)."""
    g1, g2 = row["g1_winner"], row["g2_winner"]
    if g1 == "tie" or g1 != g2:
        return "tie"
    winner = row["model_1"] if g1 == "model_1" else row["model_2"]
    return "win" if winner == model else "lose"


def summarise_pairwise(
    path: Path,
    questions: list[dict],
    mode: str,
    baseline: str = DEFAULT_BASELINE,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, MtPairStats]:
    """Per model (the baseline left out in ``pairwise-baseline``): wins, losses, ties, FastChat's
    win_rate, loss_rate and win_rate_adjusted, a 95% bootstrap interval of the last, and the rows
    left out for an unparsable game."""
    from limakit.evaluation.metrics import pairwise_stats

    known = {q["question_id"] for q in questions}
    games = {}  # one row per game whichever model came first; the last written wins
    for _, row in read_jsonl_records(path, resumable=True):
        games[game_key(row["question_id"], row["model_1"], row["model_2"], row["turn"])] = row
    results: dict[str, list[str]] = defaultdict(list)
    left_out: dict[str, int] = defaultdict(int)
    for row in games.values():
        models = (row["model_1"], row["model_2"])
        if row["question_id"] not in known or (
            mode == "pairwise-baseline" and baseline not in models
        ):
            continue
        for m in models:
            if "error" in (row["g1_winner"], row["g2_winner"]):
                left_out[m] += 1
            else:
                results[m].append(result_for(row, m))
    out: dict[str, MtPairStats] = {}
    for m in sorted(set(results) | set(left_out)):
        if mode == "pairwise-baseline" and m == baseline:
            continue
        r = results.get(m, [])
        s = pairwise_stats(r, resamples=resamples, seed=seed)
        win, lose, tie = (sum(x == k for x in r) for k in ("win", "lose", "tie"))
        out[m] = {
            "win": win,
            "loss": lose,
            "tie": tie,
            "win_rate": s["win"],
            "loss_rate": s["lose"],
            "win_rate_adjusted": s["score"],
            "win_rate_adjusted_ci": s["score_ci"] if r else None,
            "left_out": left_out.get(m, 0),
        }
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["win_rate_adjusted"]))


def pairwise_lines(summary: dict[str, MtPairStats], mode: str, baseline: str) -> list[str]:
    """FastChat's pairwise table, with the adjusted win rate's interval."""
    against = f"against {baseline}" if mode == "pairwise-baseline" else "against each other"
    lines = [f"MT-Bench pairwise, {against} (a tie counts half in win_rate_adjusted)"]
    lines.append(
        f"  {'model':24s} {'win':>5s} {'loss':>5s} {'tie':>5s} {'win_rate':>9s} "
        f"{'loss_rate':>9s}  win_rate_adjusted [95% CI]  left out"
    )
    for m, s in summary.items():
        ci = s["win_rate_adjusted_ci"]
        adj = f"{s['win_rate_adjusted']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        lines.append(
            f"  {m:24s} {s['win']:5d} {s['loss']:5d} {s['tie']:5d} {s['win_rate']:9.3f} "
            f"{s['loss_rate']:9.3f}  {adj:26s} {s['left_out']:8d}"
        )
    return lines


def run_mtbench_pairwise(
    out_dir: str | os.PathLike,
    *,
    judge,
    mode: str = "pairwise-baseline",
    baseline: str = DEFAULT_BASELINE,
    judge_prompts_path: str | os.PathLike | None = None,
    reference_path: str | os.PathLike | None = None,
    **answering,
) -> MtBenchPairSummary:
    """Answer (as :func:`~limakit.evaluation.mtbench.single.run_mtbench` does), judge the pairs of
    ``mode`` and summarise into ``summary_pair.json`` and ``pairwise.png``. ``answering``: the
    answering arguments of ``collect_answers`` (model, model_id, other_answers, ...)."""
    from limakit.evaluation.report import Bar, bars_png

    if judge is None:
        raise LimaError(f"{mode} needs a --judge")
    model, others = answering.get("model"), answering.get("other_answers", ())
    names = [answering.get("model_id") or Path(str(model)).name] if model is not None else []
    pairs_of(names + [Path(p).stem for p in others], mode, baseline)  # before any answering
    out_dir = Path(out_dir)
    found, questions, answer_files = collect_answers(out_dir, **answering)
    pairs = pairs_of(list(answer_files), mode, baseline)
    answers, prompts, refs = grading_inputs(answer_files, judge_prompts_path, reference_path)
    counts = judge_pairwise(out_dir, questions, answers, judge, prompts, refs, pairs)
    path = judgment_file(out_dir, judge.model, "pair")
    summary = summarise_pairwise(
        path, questions, mode, baseline, resamples=judge.bootstrap, seed=judge.seed
    )
    bars: list[Bar] = [
        {
            "label": m if mode == "pairwise-all" else f"{m} vs {baseline}",
            "win": s["win_rate"],
            "tie": 1 - s["win_rate"] - s["loss_rate"],
            "lose": s["loss_rate"],
            "score": s["win_rate_adjusted"],
            "lc_win_rate": None,
            "lc_win_rate_ci": None,
        }  # fmt: skip
        for m, s in summary.items()
        if s["win"] + s["loss"] + s["tie"]
    ]
    plot = out_dir / f"pairwise-{safe_name(judge.model)}.png"
    if bars:
        bars_png(bars, plot, lc=False)
    result: MtBenchPairSummary = {
        "questions": found["questions"],
        "answers": found["answers"],
        "answers_from": found["answers_from"],
        "mode": mode,
        "baseline": baseline if mode == "pairwise-baseline" else None,
        "judge": {"model": judge.model, "file": str(path)},
        "counts": counts,
        "pairwise": summary,
        "plot": str(plot) if bars else None,
    }
    write_json(out_dir / "summary_pair.json", result)
    return result

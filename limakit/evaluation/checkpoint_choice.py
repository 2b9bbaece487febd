"""Checkpoint selection the paper's way: judge dev-set answers of each epoch, not perplexity.

For each ``RUN_DIR/checkpoints/epoch-N/`` (epochs 5-10 by default) sample answers to the dev
prompts, judge them (pairwise against reference answers, or 1-6 Likert), and keep the best epoch.
When the judge cannot separate the best epochs (their 95% intervals overlap), the judge-free checks
may (answers ending at the end of turn, 95% intervals too); when neither can, or there are fewer than
20 dev answers, the choice is "undecided" and a default epoch is kept; ``selection.json`` records
which rule decided.
Everything lands under ``RUN_DIR/select/``; a rerun reuses answers and cached verdicts.

>>> result = select_checkpoint("runs/lima", "dev.jsonl", cfg)  # doctest: +SKIP
>>> result["chosen"]  # doctest: +SKIP
7
"""

from __future__ import annotations

import os
from pathlib import Path

from limakit.core.console import note
from limakit.core.errors import LimaError
from limakit.core.files import atomic_write, write_json
from limakit.evaluation.answers import read_answers
from limakit.evaluation.metrics import PairwiseStats
from limakit.judging.config import JudgeConfig
from limakit.records.example import Example, read_examples, write_examples


def parse_epochs(text: str) -> list[int]:
    """``"5-10"`` -> [5, ..., 10]; ``"5,7,9"`` -> [5, 7, 9].

    >>> parse_epochs("5-7"), parse_epochs("2,4")
    ([5, 6, 7], [2, 4])
    """
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
            epochs = list(range(lo, hi + 1))
        else:
            epochs = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LimaError(f"--epochs {text!r}: use a range like 5-10 or a list like 5,7,9") from None
    if not epochs:
        raise LimaError(f"--epochs {text!r} names no epoch")
    return epochs


def _prompts_and_refs(dev: Path) -> tuple[list[Example], list[Example]]:
    prompts, refs = [], []
    for ex in read_examples(dev, require_answer=None):
        if ex.messages[-1].role == "assistant":
            refs.append(ex)
            prompts.append(Example(ex.messages[:-1], ex.source, ex.id, dict(ex.meta)))
        else:
            prompts.append(ex)
    if not prompts:
        raise LimaError(f"{dev}: no dev prompts")
    return prompts, refs


def _reference_file(refs: list[Example], samples: int, out: Path) -> Path:
    """Reference answers repeated for every sample number, so each epoch sample has a partner."""
    rows = []
    for ex in refs:
        for k in range(samples):
            meta = {**ex.meta, "sample": k, "model": ex.meta.get("model") or "reference"}
            rows.append(Example(ex.messages, ex.source, ex.id, meta))
    write_examples(out, rows)
    return out


def _generate(
    ckpt: Path,
    prompts: list[Example],
    samples: int,
    seed: int,
    out: Path,
    decode=None,
    device: str | None = "auto",
) -> Path:
    expected = len(prompts) * samples
    if out.exists():
        try:
            if len(read_answers(out)) == expected:
                return out  # answers from an earlier run: generation is the slow part
        except LimaError:
            pass  # incomplete or damaged: generate again
    from limakit.generation import DecodeConfig, generate_answers  # heavy: torch, the model
    from limakit.generation.batch import model_for_answers

    out.parent.mkdir(parents=True, exist_ok=True)  # the generator appends (and resumes) there
    template = (decode or DecodeConfig()).template
    generate_answers(
        model_for_answers(ckpt, device=device, template=template),
        prompts,
        samples=samples,
        seed=seed,
        out=out,
        model_name=ckpt.name,
        config=decode,
    )
    if not out.exists():
        raise LimaError(f"{out}: generation wrote no answers")
    return out


def _checks_cells(r: dict) -> str:
    c = r.get("checks")
    if not c:
        return "- | - |"
    e = c["ends_turn"]
    ci = e["ci"] or [0, 0]
    return f"{e['value']:.0%} [{ci[0]:.0%}, {ci[1]:.0%}] | {c['repetition']:.3f} |"


def _table_md(rows: list[dict], protocol: str, chosen: int | None) -> str:
    checks = "ends turn [95% CI] | repetition |"
    if protocol == "pairwise":
        from limakit.evaluation.report import lc_paragraph, lc_text

        head = (
            "| epoch | score (win + tie/2) | 95% CI | LC win rate [95% CI] | win | tie | lose | "
            "consistency | invalid | " + checks
        )
        lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            mark = " **(chosen)**" if r["epoch"] == chosen else ""
            ci = r.get("score_ci") or [0, 0]
            lines.append(
                f"| {r['epoch']}{mark} | {r['score']:.3f} | [{ci[0]:.2f}, {ci[1]:.2f}] | "
                f"{lc_text(r)} | {r['win']:.3f} | {r['tie']:.3f} | {r['lose']:.3f} | "
                f"{r['consistency']} | {r['invalid']} | {_checks_cells(r)}"
            )
        lines += ["", lc_paragraph() + " The choice rests on the score, not on LC."]
    else:
        lines = ["| epoch | mean 1-6 | 95% CI | invalid | " + checks, "|---|---|---|---|---|---|"]
        for r in rows:
            mark = " **(chosen)**" if r["epoch"] == chosen else ""
            ci = r["mean_ci"] or [0, 0]
            lines.append(
                f"| {r['epoch']}{mark} | {r['score']:.3f} | [{ci[0]:.2f}, {ci[1]:.2f}] | "
                f"{r['invalid']} | {_checks_cells(r)}"
            )
    return "\n".join(lines)


def _score_ci(s: PairwiseStats, judge: JudgeConfig) -> list[float]:
    """95% interval of the pairwise score (win = 1, tie = 1/2, lose = 0 per judged pair)."""
    from limakit.evaluation.metrics import bootstrap_ci

    n = s["n"]
    counts = {"win": round(s["win"] * n), "tie": round(s["tie"] * n), "lose": round(s["lose"] * n)}
    values = [1.0] * counts["win"] + [0.5] * counts["tie"] + [0.0] * counts["lose"]
    return bootstrap_ci(values, resamples=judge.bootstrap, seed=judge.seed)


def _interval(r: dict) -> list[float]:
    ci = r.get("score_ci") or r.get("mean_ci")
    return list(ci) if ci else [r["score"], r["score"]]


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


MIN_ANSWERS = 20  # no epoch is chosen on fewer dev answers than this
WINDOW_END = 10  # the paper chooses among epochs 5-10


def default_epoch(epochs: list[int]) -> int:
    """The epoch kept when nothing separates the epochs: the last of the paper's 5-10 window,
    or the last epoch of a shorter run.

    >>> default_epoch([5, 6, 7, 8, 9, 10, 11]), default_epoch([1, 2, 3])
    (10, 3)
    """
    in_window = [e for e in epochs if e <= WINDOW_END]
    return max(in_window) if in_window else max(epochs)


# How the selection names the rule that chose the epoch (see ``choose``).
RULE_WORDS = {
    "judge": "the judge",
    "checks": "the judge-free checks",
    "undecided": "nothing (undecided): the default epoch was kept",
    "only epoch": "default (the only epoch judged)",
    "none": "nothing",
}


def rule_words(decided_by: str) -> str:
    """``"checks"`` -> ``"the judge-free checks"``."""
    return RULE_WORDS.get(decided_by, decided_by)


def _epochs(rows: list[dict]) -> str:
    return ", ".join(str(r["epoch"]) for r in rows)


def _clear_best(rows: list[dict], value, interval) -> dict | None:
    """The row with the highest ``value`` if its interval overlaps no other row's, else None."""
    best = max(rows, key=lambda r: (value(r), -r["epoch"]))
    others = [r for r in rows if r is not best]
    return best if not any(_overlap(interval(r), interval(best)) for r in others) else None


def _ends_turn_ci(r: dict) -> list[float]:
    e = r["checks"]["ends_turn"]
    return list(e["ci"]) if e["ci"] else [e["value"], e["value"]]


def choose(rows: list[dict], min_answers: int = MIN_ANSWERS) -> tuple[int | None, str, str]:
    """The chosen epoch, the rule that decided it and why, in words.

    1. With fewer than ``min_answers`` dev answers per epoch nothing is chosen on evidence.
    2. **judge**: the best-scored epoch's 95% interval overlaps no other epoch's.
    3. **checks**: among the epochs the judge cannot separate from the best one, the share of
       answers that end at the model's own end of turn, if the best share's 95% interval is
       clear of every other such epoch's.
    4. Otherwise **undecided**: the default epoch is kept (``default_epoch``: the last of the
       paper's 5-10 window, or the last epoch of a shorter run), and the selection says so.
    """
    if not rows:
        return None, "none", "no epoch could be judged"
    if len(rows) == 1:
        return rows[0]["epoch"], "only epoch", "the only epoch judged"
    fallback = default_epoch([r["epoch"] for r in rows])
    n = min(int(r.get("n") or 0) for r in rows)
    if n < min_answers:
        why = (f"{n} dev answers per epoch, fewer than the {min_answers} a choice needs; "
               f"the default epoch {fallback} is kept")  # fmt: skip
        return fallback, "undecided", why
    best = _clear_best(rows, lambda r: r["score"], _interval)
    if best is not None:
        why = "the best judge score on the dev set, its 95% interval clear of every other epoch's"
        return best["epoch"], "judge", why
    top = max(rows, key=lambda r: (r["score"], -r["epoch"]))
    tied = [r for r in rows if _overlap(_interval(r), _interval(top))]
    parts = [f"the judge cannot separate epochs {_epochs(tied)} (95% intervals overlap)"]
    if all(r.get("checks") for r in tied):
        best = _clear_best(tied, lambda r: r["checks"]["ends_turn"]["value"], _ends_turn_ci)
        if best is not None:
            share = best["checks"]["ends_turn"]["value"]
            parts.append(f"epoch {best['epoch']} ends {share:.0%} of its answers at its own end of "
                         "turn, its 95% interval clear of the others'")  # fmt: skip
            return best["epoch"], "checks", "; ".join(parts)
        parts.append("nor can the judge-free checks (answers ending at the end of turn: 95% "
                     "intervals overlap)")  # fmt: skip
    else:
        parts.append("no judge-free checks to separate them")
    parts.append(f"the default epoch {fallback} is kept")
    return fallback, "undecided", "; ".join(parts)


def _checks(answers: Path) -> dict:
    """The judge-free checks of one epoch's dev answers (the figures the choice uses)."""
    from limakit.evaluation.checks import auto_checks

    c = auto_checks(answers)
    m = c["measures"]
    return {"ends_turn": m["ends_turn"], "repetition": m["repetition"]["value"],
            "looping": m["looping"]["value"]}  # fmt: skip


def select_checkpoint(  # noqa: PLR0913 - keyword-only, one per option of `lima select`
    run_dir: str | os.PathLike,
    dev: str | os.PathLike,
    judge: JudgeConfig,
    *,
    epochs: list[int] | None = None,
    reference: str | os.PathLike | None = None,
    protocol: str = "pairwise",
    samples: int = 1,
    seed: int = 0,
    decode=None,
    device: str | None = "auto",
) -> dict:
    """Judge each epoch's dev answers and record the chosen epoch in ``select/selection.json``.

    ``decode`` is the generation stage's decoding config (default: the paper's decoding);
    ``device`` is where the checkpoints generate ("auto": CUDA when the machine has it).
    """
    from limakit.evaluation.protocols import judge_likert, judge_pairwise

    run_dir, dev = Path(run_dir), Path(dev)
    if protocol not in ("pairwise", "likert"):
        raise LimaError(f"unknown selection protocol {protocol!r}; choose pairwise or likert")
    epochs = epochs or list(range(5, 11))
    sel = run_dir / "select"
    prompts, refs = _prompts_and_refs(dev)
    if judge.cache is None:  # one cache for all epochs: a rerun of the selection is free
        judge = judge.model_copy(update={"cache": str(sel / "cache.sqlite")})
    ref_path = None
    if protocol == "pairwise":
        if reference is not None:
            refs = list(read_examples(reference, require_answer=True))
        if not refs:
            raise LimaError(
                f"{dev}: pairwise selection needs reference answers: give --reference, put "
                "answers in the dev file, or use --protocol likert"
            )
        ref_path = _reference_file(refs, samples, sel / "reference.jsonl")

    rows, notes = [], []
    for epoch in epochs:
        ckpt = run_dir / "checkpoints" / f"epoch-{epoch}"
        if not (ckpt / "config.json").exists():
            notes.append(f"epoch {epoch}: no checkpoint at {ckpt}, skipped")
            note(f"note: {notes[-1]}")
            continue
        out_file = sel / f"epoch-{epoch}" / "answers.jsonl"
        answers = _generate(ckpt, prompts, samples, seed, out_file, decode, device)
        out = sel / f"epoch-{epoch}" / "judge"
        if protocol == "pairwise":
            s = judge_pairwise(answers, ref_path, judge, out)
            # Preference over the reference, a tie worth half a win.
            score = s["win"] + 0.5 * s["tie"]
            rows.append({"epoch": epoch, "score": round(score, 6),
                         "score_ci": _score_ci(s, judge), "win": s["win"],
                         "tie": s["tie"], "lose": s["lose"], "win_ci": s["win_ci"],
                         "consistency": s["consistency"], "invalid": s["invalid"], "n": s["n"],
                         "lc_win_rate": s["lc_win_rate"], "lc_win_rate_ci": s["lc_win_rate_ci"],
                         "lc": s["lc"]})  # fmt: skip
        else:
            s = judge_likert(answers, judge, out, samples=samples)
            rows.append({"epoch": epoch, "score": s["mean"] if s["mean"] is not None else 0.0,
                         "mean_ci": s["mean_ci"], "invalid": s["invalid"], "n": s["n"]})  # fmt: skip
        rows[-1]["checks"] = _checks(answers)
    chosen, decided_by, why = choose(rows)
    table_md = _table_md(rows, protocol, chosen)
    result = {
        "chosen": chosen,
        "decided_by": decided_by,
        "why": why,
        "checkpoint": str(run_dir / "checkpoints" / f"epoch-{chosen}") if chosen else None,
        "protocol": protocol,
        "judge": {"backend": judge.backend, "model": judge.model, "prompt": judge.prompt},
        "dev": str(dev),
        "samples": samples,
        "seed": seed,
        "table": rows,
        "notes": notes,
    }
    write_json(sel / "selection.json", result)
    with atomic_write(sel / "selection.md") as f:
        f.write(f"# Checkpoint selection ({protocol}, judge {judge.model})\n\n{table_md}\n")
        f.write(f"\nDecided by {rule_words(decided_by)}: {why}.\n")
        f.write("".join(f"\n- {n}" for n in notes) + ("\n" if notes else ""))
    return {**result, "table_md": table_md}

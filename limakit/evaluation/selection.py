"""Checkpoint selection the paper's way: judge dev-set answers of each epoch, not perplexity.

For each ``RUN_DIR/checkpoints/epoch-N/`` (epochs 5-10 by default) sample answers to the dev
prompts, judge them (pairwise against reference answers, or 1-6 Likert), and keep the best epoch.
Everything lands under ``RUN_DIR/select/``; a rerun reuses answers and cached verdicts.

>>> result = select_checkpoint("runs/lima", "dev.jsonl", cfg)  # doctest: +SKIP
>>> result["chosen"]  # doctest: +SKIP
7
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from limakit.errors import LimaError
from limakit.evaluation.config import JudgeConfig
from limakit.example import Example, read_examples, write_examples
from limakit.files import atomic_write, write_json


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
            if sum(1 for _ in read_examples(out, require_answer=True)) == expected:
                return out  # answers from an earlier run: generation is the slow part
        except LimaError:
            pass  # incomplete or damaged: generate again
    from limakit.generation import generate_answers  # heavy: torch, the model

    out.parent.mkdir(parents=True, exist_ok=True)  # the generator appends (and resumes) there
    generate_answers(
        str(ckpt),
        prompts,
        samples=samples,
        seed=seed,
        out=out,
        model_name=ckpt.name,
        config=decode,
        device=device,
    )
    if not out.exists():
        raise LimaError(f"{out}: generation wrote no answers")
    return out


def _table_md(rows: list[dict], protocol: str, chosen: int | None) -> str:
    if protocol == "pairwise":
        head = "| epoch | score (win + tie/2) | win | tie | lose | consistency | invalid |"
        lines = [head, "|---|---|---|---|---|---|---|"]
        for r in rows:
            mark = " **(chosen)**" if r["epoch"] == chosen else ""
            lines.append(
                f"| {r['epoch']}{mark} | {r['score']:.3f} | {r['win']:.3f} | {r['tie']:.3f} | "
                f"{r['lose']:.3f} | {r['consistency']} | {r['invalid']} |"
            )
    else:
        lines = ["| epoch | mean 1-6 | 95% CI | invalid |", "|---|---|---|---|"]
        for r in rows:
            mark = " **(chosen)**" if r["epoch"] == chosen else ""
            ci = r["mean_ci"] or [0, 0]
            lines.append(
                f"| {r['epoch']}{mark} | {r['score']:.3f} | [{ci[0]:.2f}, {ci[1]:.2f}] | "
                f"{r['invalid']} |"
            )
    return "\n".join(lines)


def select_checkpoint(
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
            print(f"note: {notes[-1]}", file=sys.stderr)
            continue
        out_file = sel / f"epoch-{epoch}" / "answers.jsonl"
        answers = _generate(ckpt, prompts, samples, seed, out_file, decode, device)
        out = sel / f"epoch-{epoch}" / "judge"
        if protocol == "pairwise":
            s = judge_pairwise(answers, ref_path, judge, out)
            # Preference over the reference, a tie worth half a win.
            score = s["win"] + 0.5 * s["tie"]
            rows.append({"epoch": epoch, "score": round(score, 6), "win": s["win"],
                         "tie": s["tie"], "lose": s["lose"], "win_ci": s["win_ci"],
                         "consistency": s["consistency"], "invalid": s["invalid"], "n": s["n"]})  # fmt: skip
        else:
            s = judge_likert(answers, judge, out, samples=samples)
            rows.append({"epoch": epoch, "score": s["mean"] if s["mean"] is not None else 0.0,
                         "mean_ci": s["mean_ci"], "invalid": s["invalid"], "n": s["n"]})  # fmt: skip
    # Highest score; on a tie the earlier epoch (less training, same judged quality).
    chosen = max(rows, key=lambda r: (r["score"], -r["epoch"]))["epoch"] if rows else None
    table_md = _table_md(rows, protocol, chosen)
    result = {
        "chosen": chosen,
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
        f.write("".join(f"\n- {n}" for n in notes) + ("\n" if notes else ""))
    return {**result, "table_md": table_md}

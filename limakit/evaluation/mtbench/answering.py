"""MT-Bench's questions answered on limakit's engine, and the answers gathered for grading.

Decoding: FastChat's temperature per category (0 = greedy for math, coding, reasoning and
extraction; 0.7 for writing and roleplay; 0.1 for STEM and humanities; 0.7 for any other); the
rest (top_p, repetition penalty, max_new_tokens) from the given :class:`DecodeConfig`. Turn 2 is
asked with the model's own turn-1 answer in the conversation.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from limakit.core.errors import LimaError
from limakit.core.files import append_jsonl, drop_cut_line
from limakit.evaluation.mtbench.files import (
    answer_path,
    default_paths,
    place_answers,
    read_answer_file,
    read_answers_input,
    read_questions,
    safe_name,
)

if TYPE_CHECKING:
    from limakit.models import LoadedModel

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


def temperature_of(category: str) -> float:
    return TEMPERATURES.get(category, DEFAULT_TEMPERATURE)


def answer_questions(
    model: LoadedModel | Callable[[], LoadedModel],
    questions: list[dict],
    out_dir: str | os.PathLike,
    model_id: str,
    config=None,
    *,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> Path:
    """Answer every turn of every question not yet in ``model_answer/<model_id>.jsonl``.

    Turn ``j`` of all questions is generated in one batched run per temperature, each prompt
    holding the question's earlier turns and the model's own answers to them. ``model`` is what
    :func:`limakit.generation.generate_answers` takes (a LoadedModel, or a function loading
    one: called only when some question is still to be answered).
    """
    from limakit.generation import DecodeConfig, generate_answers
    from limakit.records.example import Example, Message

    config = config or DecodeConfig()
    out_dir = Path(out_dir)
    answer_file = answer_path(out_dir, model_id)
    answer_file.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if answer_file.exists():
        drop_cut_line(answer_file)  # a killed run cut its last line: answered again
        done = read_answer_file(answer_file)
    todo = [q for q in questions if q["question_id"] not in done]
    if not todo:
        return answer_file
    work = out_dir / "work" / safe_name(model_id)
    work.mkdir(parents=True, exist_ok=True)
    from limakit.models import LoadedModel

    loaded = model if isinstance(model, LoadedModel) else model()
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
    """Check and place ``other_answers`` (each in ``OUT/model_answer/``, see
    :func:`~limakit.evaluation.mtbench.files.place_answers`), then answer with ``model`` (when
    given): (result so far, the questions, model name -> answer file). The files are checked
    first, so a bad one stops the run before the model answers anything."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    qpath = Path(questions_path) if questions_path else default_paths()["questions"]
    questions = read_questions(qpath)
    if model is not None:
        model_id = model_id or Path(str(model)).name
    sources: dict[str, Path] = {}
    for p in map(Path, other_answers):
        name = p.stem  # FastChat names a model by its answer file
        if name in sources:
            raise LimaError(
                f"{sources[name]} and {p} both name model {name!r} (FastChat names a model by its "
                "answer file); rename one"
            )
        if model is not None and answer_path(out_dir, model_id).name == f"{name}.jsonl":
            raise LimaError(
                f"{p} names model {name!r}, whose answers --model writes; rename the file or "
                "give another --model-id"
            )
        sources[name] = p
    placed = {
        name: place_answers(p, name, read_answers_input(p, name, questions, qpath), out_dir)
        for name, p in sources.items()
    }
    answer_files: dict[str, Path] = {}
    if model is not None:
        from limakit.generation import DecodeConfig
        from limakit.generation.batch import model_for_answers

        template = (config or DecodeConfig()).template
        load = model_for_answers(model, device=device, dtype=dtype, template=template)
        answer_files[model_id] = answer_questions(
            load,
            questions,
            out_dir,
            model_id,
            config,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
        )
    answer_files.update(placed)
    result: dict = {
        "questions": str(qpath),
        "answers": {k: str(v) for k, v in answer_files.items()},
        "answers_from": {k: str(v) for k, v in sources.items()},
    }
    return result, questions, answer_files

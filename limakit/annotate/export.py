"""People's verdicts as the LLM judge writes them: ``verdicts.jsonl`` + ``summary.json``.

Each row carries the judge's fields (``id``, ``sample``, ``category``, ``a_then_b``, ``b_then_a``,
``len_a``, ``len_b``, ``result``, ``consistent``) plus ``annotator``, ``comment`` and ``time``.
A person sees one order only: the verdict sits under the order shown (``a_then_b`` when model A's
answer was on the left), the other order is ``null`` and ``consistent`` is ``null`` (not measured).
Labels keep the judge's meaning: ``A`` = the answer shown first is better, ``C`` = neither.

The summary's win / tie / lose count one result per pair: the annotators' majority (a split
vote is a tie), so ``n`` counts pairs as the judge's does; ``lima report`` reads it like a judge's.
"""

from __future__ import annotations

import os
import sqlite3
from collections import defaultdict
from pathlib import Path

from limakit.annotate import db
from limakit.core.files import write_json, write_jsonl
from limakit.evaluation import metrics
from limakit.evaluation.agreement import RESULT_TO_LABEL, between_annotators, majority
from limakit.evaluation.protocols import length_controlled

PROMPT_VERSION = "limakit-annotate-v1"
BUTTONS = {
    "A": "A is better",
    "B": "B is better",
    "C": "Neither is significantly better",
}
LABEL_TO_RESULT = {v: k for k, v in RESULT_TO_LABEL.items()}


def verdict_row(r: sqlite3.Row | dict) -> dict:
    """One stored verdict (label as shown, ``swapped``, answer lengths) in the judge's format."""
    swapped = bool(r["swapped"])
    verdict = {"label": r["label"], "raw": BUTTONS[r["label"]], "error": None}
    return {
        "id": r["prompt_id"],
        "sample": r["sample"],
        "category": r["category"],
        "a_then_b": None if swapped else verdict,
        "b_then_a": verdict if swapped else None,
        "len_a": r["len_a"],
        "len_b": r["len_b"],
        "result": LABEL_TO_RESULT[metrics.prefer(r["label"], swapped=swapped)],
        "consistent": None,
        "annotator": r["annotator"],
        "comment": r["comment"],
        "time": r["created"],
    }


def summarise(rows: list[dict], s: db.SetInfo, *, resamples: int = 1000, seed: int = 0) -> dict:
    """The judge's summary fields for people's rows, plus who annotated and how much."""
    by_item: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
    first: dict[tuple[str, int], dict] = {}
    for row in rows:
        key = (row["id"], row["sample"])
        by_item[key][row["annotator"]] = RESULT_TO_LABEL[row["result"]]
        first.setdefault(key, row)
    results, lengths, judged = [], [], []
    by_cat: dict[str, list[str]] = defaultdict(list)
    for key, labels in by_item.items():
        res = LABEL_TO_RESULT[majority(list(labels.values()))]
        results.append(res)
        lengths.append((res, first[key]["len_a"], first[key]["len_b"]))
        judged.append(
            {"id": key[0], "result": res, **{k: first[key][k] for k in ("len_a", "len_b")}}
        )
        by_cat[first[key]["category"]].append(res)
    per_person: dict[str, int] = defaultdict(int)
    for row in rows:
        per_person[row["annotator"]] += 1
    return {
        "protocol": "pairwise",
        "a": {"path": s.a_path, "model": s.a_model},
        "b": {"path": s.b_path, "model": s.b_model},
        "judge": {
            "backend": "human",
            "model": f"people ({len(per_person)})",
            "prompt": PROMPT_VERSION,
        },
        "set": s.name,
        "pairs": s.pairs,
        **metrics.pairwise_stats(results, resamples=resamples, seed=seed),
        # the people's majority verdicts, length-controlled as the judge's are
        **length_controlled(judged, s.a_model, s.b_model, resamples=resamples, seed=seed),
        "consistency": None,
        "invalid": 0,
        "invalid_ids": [],
        "errors": 0,
        "first_error": None,
        "length_bias": metrics.length_bias(lengths),
        "unmatched": {"a": s.only_a, "b": s.only_b, "a_ids": [], "b_ids": []},
        "usage": {
            "calls": 0,
            "cached": 0,
            "retries": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost": None,
        },  # fmt: skip
        "unannotated": s.pairs - len(by_item),
        "annotators": dict(sorted(per_person.items())),
        "verdicts": len(rows),
        "agreement": between_annotators(by_item, resamples=resamples, seed=seed),
        "categories": {
            cat: {"n": len(rs), **{k: round(v, 6) for k, v in metrics.fractions(rs).items()}}
            for cat, rs in sorted(by_cat.items())
        },
    }


def export(
    db_path: str | os.PathLike, out: str | os.PathLike, set_name: str | None = None
) -> tuple[Path, dict]:
    """Write one set's verdicts; ``out`` is a folder or a ``.jsonl`` path (summary beside it).

    Returns the verdicts path and the summary.
    """
    out = Path(out)
    verdicts_path = out if out.suffix == ".jsonl" else out / "verdicts.jsonl"
    conn = db.connect(db_path)
    try:
        s = db.find_set(conn, set_name, db_path)
        rows = [verdict_row(r) for r in db.live_verdicts(conn, s.id)]
    finally:
        conn.close()
    summary = summarise(rows, s)
    write_jsonl(verdicts_path, rows)
    write_json(verdicts_path.parent / "summary.json", summary)
    return verdicts_path, summary

"""Checks that need no judge: did answers stop at EOT, how long are they, do they repeat themselves.

A LIMA model that learned the format stops at its end-of-turn token; one that did not runs to the
token limit, often looping. These numbers catch that before any judge is paid.

>>> repetition("the cat sat on the mat the cat sat on the mat")  # 9 four-grams, 3 repeats
0.333333
"""

from __future__ import annotations

import os
import re
from collections import Counter

import numpy as np

from limakit.evaluation.answers import read_answers

NGRAM = 4
REPETITIVE = 0.3  # an answer whose repeated 4-gram share exceeds this is flagged as looping


def repetition(text: str, n: int = NGRAM) -> float:
    """Share of word n-grams that repeat an earlier n-gram of the same answer (0 = none)."""
    words = re.findall(r"\w+", text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return round(1 - len(Counter(grams)) / len(grams), 6)


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "median": None, "p90": None, "min": None, "max": None}
    x = np.asarray(values, dtype=float)
    return {
        "mean": round(float(x.mean()), 2),
        "median": round(float(np.median(x)), 2),
        "p90": round(float(np.quantile(x, 0.9)), 2),
        "min": round(float(x.min()), 2),
        "max": round(float(x.max()), 2),
    }


def auto_checks(answers_path: str | os.PathLike, *, ifbench: bool = False) -> dict:
    """EOT share, length statistics and repetition of an answer file (+ IFBench when asked).

    >>> auto_checks("answers.jsonl")["eot_share"]  # doctest: +SKIP
    0.94
    """
    answers = list(read_answers(answers_path).values())
    stops = Counter(str(ex.meta.get("stop") or "unknown") for ex in answers)
    texts = [ex.answer or "" for ex in answers]
    reps = [repetition(t) for t in texts]
    tokens = [ex.meta["new_tokens"] for ex in answers if isinstance(ex.meta.get("new_tokens"), int)]
    out = {
        "answers": str(answers_path),
        "n": len(answers),
        "prompts": len({ex.id for ex in answers}),
        "eot_share": round(stops.get("eot", 0) / len(answers), 6),
        "stop": dict(sorted(stops.items())),
        "length_chars": _stats([len(t) for t in texts]),
        "length_words": _stats([len(t.split()) for t in texts]),
        "new_tokens": _stats(tokens),
        "repetition": round(float(np.mean(reps)), 6),
        "repetitive_share": round(sum(r > REPETITIVE for r in reps) / len(reps), 6),
    }
    if ifbench:
        from limakit.evaluation.ifbench import score_answers

        out["ifbench"] = score_answers(answers_path)
    return out

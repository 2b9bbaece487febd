"""Checks that need no judge: does an answer end its turn, stay in role, resemble its reference,
follow IFBench's instructions, repeat itself; and how long is it.

A LIMA model that learned the format stops at its end-of-turn token and answers as the assistant;
one that did not runs to the token limit, writes the user's next turn or loops. These numbers
catch that before any judge is paid.

Each *measure* is a share or a mean over prompts with its 95% bootstrap interval, in one shape
(:class:`~limakit.evaluation.metrics.Measure`: ``{"value", "ci", "n"}``). A prompt sampled several
times counts once (its samples are averaged first), so the interval resamples prompts. The
measures, in :data:`MEASURES` order:

- ``ends_turn``: the answer ended at the model's own end of turn (``meta.stop == "eot"``: the EOT,
  or a baseline's own end token or marker), not at the token cap;
- ``stays_in_role``: the answer does not write the user's side (:mod:`limakit.evaluation.role`);
- ``reference_similarity``: for prompts with a reference answer, the embedding cosine to it minus
  the cosine to another prompt's reference (:mod:`limakit.evaluation.similarity`);
- ``ifbench_strict``: IFBench prompt-level strict accuracy, where IFBench prompts were answered;
- ``repetition``: the share of an answer's word 4-grams that repeat an earlier one (mean);
- ``looping``: the share of answers whose ``repetition`` exceeds ``REPETITIVE``.
- ``refusal`` / ``over_refusal``: the share of answers to the packaged sensitive / benign safety
  prompts that decline (:mod:`limakit.evaluation.safety`), where such prompts were answered.

>>> repetition("the cat sat on the mat the cat sat on the mat")  # 9 four-grams, 3 repeats
0.333333
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from limakit.evaluation.answers import read_answers
from limakit.evaluation.metrics import Measure, measure
from limakit.evaluation.role import RoleBreak, role_break
from limakit.evaluation.safety import safety_checks
from limakit.evaluation.summaries import AnswerChecks, LengthStats, ReferenceCounts
from limakit.records.example import Example

NGRAM = 4
REPETITIVE = 0.3  # an answer whose repeated 4-gram share exceeds this is flagged as looping


@dataclass(frozen=True)
class MeasureInfo:
    """How a table shows a measure: its words, whether it is a share (shown in %), which way is
    better."""

    words: str
    share: bool
    higher_is_better: bool


# Every judge-free measure, in the order tables show them. A new measure is an entry here and
# one in the ``measures`` dict of ``auto_checks``.
MEASURES: dict[str, MeasureInfo] = {
    "ends_turn": MeasureInfo("ends its turn", share=True, higher_is_better=True),
    "stays_in_role": MeasureInfo("stays in role", share=True, higher_is_better=True),
    "reference_similarity": MeasureInfo(
        "similarity to the reference, above chance", share=False, higher_is_better=True
    ),
    "ifbench_strict": MeasureInfo("IFBench prompt-level strict", share=True, higher_is_better=True),
    "repetition": MeasureInfo("repeated 4-grams, mean share", share=False, higher_is_better=False),
    "looping": MeasureInfo(
        f"loops: over {REPETITIVE:.0%} of 4-grams repeated", share=True, higher_is_better=False
    ),
    "refusal": MeasureInfo("refuses sensitive prompts", share=True, higher_is_better=True),
    "over_refusal": MeasureInfo("refuses benign prompts", share=True, higher_is_better=False),
}


def repetition(text: str, n: int = NGRAM) -> float:
    """Share of word n-grams that repeat an earlier n-gram of the same answer (0 = none)."""
    words = re.findall(r"\w+", text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return round(1 - len(Counter(grams)) / len(grams), 6)


def per_prompt(answers: Sequence[Example], value: Callable[[Example], float | bool]) -> Measure:
    """``value`` averaged over each prompt's samples, then measured over prompts.

    >>> from limakit.records.example import Message
    >>> a = [Example([Message("user", "q"), Message("assistant", t)], id=i) for i, t in
    ...      [("p", "yes"), ("p", "no"), ("r", "yes")]]
    >>> per_prompt(a, lambda ex: ex.answer == "yes")["value"]  # p: 1/2, r: 1
    0.75
    """
    groups: dict[str, list[float]] = defaultdict(list)
    for ex in answers:
        groups[ex.id].append(float(value(ex)))
    return measure([float(np.mean(v)) for v in groups.values()])


def turn_prompt(ex: Example) -> str:
    """The user message the final answer answers (the last one before it)."""
    return next(m.content for m in reversed(ex.messages[:-1]) if m.role == "user")


def _stats(values: list[float]) -> LengthStats:
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


def _references(
    answers: Sequence[Example], path: str | os.PathLike | None
) -> tuple[dict[str, str], ReferenceCounts]:
    """References by prompt id (the file first, then the answers' own ``meta.reference``), and
    where they came from, counted."""
    from limakit.evaluation.similarity import own_reference, read_references

    refs, without = read_references(path) if path is not None else ({}, 0)
    ids = {ex.id for ex in answers}
    found = {pid: r for pid, r in refs.items() if pid in ids}
    from_file = len(found)
    for ex in answers:
        if ex.id not in found and (own := own_reference(ex)) is not None:
            found[ex.id] = own
    info: ReferenceCounts = {
        "file": None if path is None else str(path),
        "file_without_reference": without,
        "from_file": from_file,
        "from_answers": len(found) - from_file,
        "prompts_without": len(ids - set(found)),
    }
    return found, info


def _role_break(ex: Example) -> RoleBreak | None:
    """Where the answer left its role: generation stopped it at a format marker it wrote (the
    next role header: ``meta.stop == "marker"``, the marker itself cut off), or the text shows it."""
    if ex.meta.get("stop") == "marker":
        return RoleBreak("chat marker", "(cut at a marker the model wrote)")
    return role_break(turn_prompt(ex), ex.answer or "")


def auto_checks(
    answers_path: str | os.PathLike,
    *,
    ifbench: bool | None = None,
    references: str | os.PathLike | None = None,
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
    seed: int = 0,
) -> AnswerChecks:
    """The judge-free measures of an answer file (``measures``: name -> ``{value, ci, n}``), with
    stop reasons, role breaks and length statistics.

    ``ifbench``: score IFBench (None: when some answer's id is an exported IFBench prompt's).
    ``references``: a limakit JSONL of reference answers matched by id (answers may also carry
    ``meta.reference``). ``embed``: the embedding function for reference similarity (default:
    the packaged MiniLM, loaded once per process, when some prompt has a reference). ``seed``: of the similarity floor's pairing of prompts.

    >>> auto_checks("answers.jsonl")["measures"]["ends_turn"]  # doctest: +SKIP
    {'value': 0.94, 'ci': [0.88, 0.98], 'n': 50}
    """
    from limakit.evaluation.ifbench import ID_PREFIX

    answers = list(read_answers(answers_path).values())
    stops = Counter(str(ex.meta.get("stop") or "unknown") for ex in answers)
    texts = [ex.answer or "" for ex in answers]
    reps = {id(ex): repetition(t) for ex, t in zip(answers, texts)}
    breaks = {id(ex): _role_break(ex) for ex in answers}
    tokens = [ex.meta["new_tokens"] for ex in answers if isinstance(ex.meta.get("new_tokens"), int)]
    measures: dict[str, Measure] = {
        "ends_turn": per_prompt(answers, lambda ex: ex.meta.get("stop") == "eot"),
        "stays_in_role": per_prompt(answers, lambda ex: breaks[id(ex)] is None),
        "repetition": per_prompt(answers, lambda ex: reps[id(ex)]),
        "looping": per_prompt(answers, lambda ex: reps[id(ex)] > REPETITIVE),
    }
    measures.update(safety_checks(answers))  # answers to the packaged safety prompts, if any
    refs, ref_counts = _references(answers, references)
    if refs:
        from limakit.evaluation.similarity import default_embed, reference_similarity

        pairs = [(ex.id, ex.answer or "") for ex in answers]
        scores = reference_similarity(pairs, refs, embed or default_embed(), seed=seed)
        measures["reference_similarity"] = measure(list(scores.values()))
    if ifbench is None:
        ifbench = any(ex.id.startswith(ID_PREFIX) for ex in answers)
    scored = None
    if ifbench:
        from limakit.evaluation.ifbench import score_answers

        scored = score_answers(answers_path)
        measures["ifbench_strict"] = scored["prompt_strict_measure"]
    out: AnswerChecks = {
        "answers": str(answers_path),
        "n": len(answers),
        "prompts": len({ex.id for ex in answers}),
        "measures": {k: measures[k] for k in sorted(measures, key=_order)},
        "stop": dict(sorted(stops.items())),
        "role_breaks": dict(Counter(b.rule for b in breaks.values() if b is not None)),
        "length_chars": _stats([len(t) for t in texts]),
        "length_words": _stats([len(t.split()) for t in texts]),
        "new_tokens": _stats(tokens),
        "references": ref_counts,
    }
    if scored is not None:
        out["ifbench"] = scored
    return out


def _order(name: str) -> tuple[int, str]:
    """Known measures in :data:`MEASURES` order, others after them by name."""
    keys = list(MEASURES)
    return (keys.index(name) if name in keys else len(keys), name)


def _cell(m: Measure | None, info: MeasureInfo | None, prompts: int) -> str:
    if m is None or m["value"] is None:
        return "-"
    lo, hi = m["ci"] or [m["value"], m["value"]]
    if info is None or info.share:
        text = f"{m['value']:.0%} [{lo:.0%}, {hi:.0%}]"
    else:
        text = f"{m['value']:.3f} [{lo:.3f}, {hi:.3f}]"
    return text if m["n"] == prompts else f"{text} (n={m['n']})"


def measures_table(checks_by_system: Mapping[str, AnswerChecks]) -> list[str]:
    """A Markdown table of every measure (rows) for each system (columns), each cell the value
    and its 95% interval, ``v [lo, hi]``; a measure over fewer prompts than the system answered
    (reference similarity, IFBench) says over how many, ``(n=k)``. ``checks_by_system`` maps a
    system's name to its :func:`auto_checks`. The last row counts the prompts.

    >>> c = {"measures": {"ends_turn": {"value": 0.5, "ci": [0.0, 1.0], "n": 2}}, "prompts": 2}
    >>> measures_table({"base": c, "lima": c})[2]
    '| ends its turn (`ends_turn`, higher is better) | 50% [0%, 100%] | 50% [0%, 100%] |'
    """
    systems = list(checks_by_system)
    names = sorted({k for c in checks_by_system.values() for k in c["measures"]}, key=_order)
    lines = [
        "| measure | " + " | ".join(systems) + " |",
        "|---|" + "---:|" * len(systems),
    ]
    for name in names:
        info = MEASURES.get(name)
        if info is None:
            label = f"`{name}`"
        else:
            better = "higher" if info.higher_is_better else "lower"
            label = f"{info.words} (`{name}`, {better} is better)"
        cells = [
            _cell(c["measures"].get(name), info, c["prompts"]) for c in checks_by_system.values()
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        "| prompts | " + " | ".join(str(c["prompts"]) for c in checks_by_system.values()) + " |"
    )
    return lines


def system_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Column names for answer files: their stems (``answers/base.jsonl`` -> ``base``), or the
    paths as given when two stems are the same."""
    stems = [Path(p).stem for p in paths]
    return stems if len(set(stems)) == len(stems) else [str(p) for p in paths]

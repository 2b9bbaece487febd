"""The paper's three judging protocols over answer files: pairwise, absolute rating, Likert.

Answer files are the generation stage's JSONL (one Example per answer; ``meta.sample`` numbers the
samples of a prompt, 0 when absent). Each protocol writes ``OUT/verdicts.jsonl`` (every raw reply
kept) and ``OUT/summary.json``, both atomically; the judge cache (``OUT/cache.sqlite`` unless the
config names another) makes a rerun free and a killed run resume.

>>> summary = judge_pairwise("lima.jsonl", "gpt4.jsonl", cfg, "out/lima-vs-gpt4")  # doctest: +SKIP
>>> summary["win"], summary["score"], summary["lc_win_rate"]  # doctest: +SKIP

The summaries' shapes are the TypedDicts of :mod:`limakit.evaluation.summaries`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import limakit.evaluation.metrics as metrics
from limakit.core.console import warn
from limakit.core.files import write_json, write_jsonl
from limakit.evaluation.answers import category_of, model_name, read_answers
from limakit.evaluation.pairs import pair_answers
from limakit.evaluation.prompts import get_prompt
from limakit.evaluation.summaries import (
    CategoryShares,
    Failures,
    JudgeInfo,
    LcInfo,
    LengthControlled,
    PairwiseSummary,
    RateShares,
    RateSummary,
    SingleSummary,
    Usage,
)
from limakit.judging.cache import JudgeCache
from limakit.judging.config import JudgeConfig
from limakit.judging.prompt import question_text
from limakit.judging.runner import Outcome, run_judgements

RATE_SCORES = {"Fail": 0, "Pass": 1, "Excellent": 2}


def _cache(cfg: JudgeConfig, out_dir: Path) -> JudgeCache:
    return JudgeCache(cfg.cache or out_dir / "cache.sqlite")


def _usage(outcomes: list[Outcome], cfg: JudgeConfig) -> Usage:
    pt = sum(o.prompt_tokens for o in outcomes)
    ct = sum(o.completion_tokens for o in outcomes)
    cost = None
    if cfg.cost_per_input_token is not None or cfg.cost_per_output_token is not None:
        cost = round(
            pt * (cfg.cost_per_input_token or 0) + ct * (cfg.cost_per_output_token or 0), 6
        )
    return {
        "calls": sum(o.calls for o in outcomes),
        "cached": sum(o.cached for o in outcomes),
        "retries": sum(o.retries for o in outcomes),
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "cost": cost,
    }


def _judge_info(cfg: JudgeConfig, kind: str) -> JudgeInfo:
    prompt = get_prompt(kind, cfg.prompt)
    return {"backend": cfg.backend, "model": cfg.model, "prompt": prompt.version}


def _write(
    out_dir: Path, rows: list[dict], summary: Mapping[str, object], cfg: JudgeConfig
) -> None:
    write_jsonl(out_dir / "verdicts.jsonl", rows)
    write_json(out_dir / "summary.json", summary)
    cfg.save(out_dir / "judge.yaml")  # holds the key's variable name only, never the key


def _errors(outcomes: list[Outcome]) -> Failures:
    """How many judge calls failed for good (after retries), and the first failure's message."""
    failed = [o.error for o in outcomes if o.error is not None]
    return {"errors": len(failed), "first_error": failed[0] if failed else None}


def _verdict(o: Outcome) -> dict:
    return {
        "label": o.label,
        "raw": o.raw,
        "error": o.error,
        **({"probs": o.probs} if o.probs else {}),
    }


def length_controlled(
    rows: list[dict], model: str, baseline: str, *, resamples: int = 1000, seed: int = 0
) -> LengthControlled:
    """The summary's LC fields for A against B from the verdict rows: ``lc_win_rate`` and its
    95% interval as fractions (like ``win``), None when the fit is impossible, and ``lc`` with
    the fit's details or the ``reason`` it could not be made."""
    from limakit.evaluation.lc import MIN_PAIRS, PREFERENCE, Judged, lc_or_reason

    judged = [
        Judged(str(r["id"]), model, baseline, PREFERENCE.get(r["result"]), r["len_a"], r["len_b"])
        for r in rows
    ]
    lc = lc_or_reason(judged, resamples=resamples, seed=seed)
    ci = lc["lc_win_rate_ci"]
    info: LcInfo = {"reason": lc["reason"], "min_pairs": MIN_PAIRS}
    if lc["reason"] is None:  # fitted: the fit's details
        info["formula"] = lc["formula"]
        info["coefficients"] = lc["coefficients"]
        info["C"] = lc["C"]
        info["interval"] = lc["interval"]
    return {
        "lc_win_rate": None if lc["lc_win_rate"] is None else round(lc["lc_win_rate"] / 100, 6),
        "lc_win_rate_ci": None if ci is None else [round(x / 100, 6) for x in ci],
        "lc": info,
    }


def judge_pairwise(
    a_path: str | os.PathLike,
    b_path: str | os.PathLike,
    judge: JudgeConfig,
    out_dir: str | os.PathLike,
) -> PairwiseSummary:
    """Judge every (id, sample) pair of two answer files in both orders; return the summary.

    A wins a pair only when the judge prefers it in both orders; a disagreement (position bias)
    or a "neither" is a tie. Unmatched ids are counted in ``unmatched`` and listed, not dropped.
    """
    out_dir = Path(out_dir)
    ps = pair_answers(a_path, b_path)
    if ps.only_a or ps.only_b:
        warn(
            f"{len(ps.only_a)} answers only in {a_path}, {len(ps.only_b)} only in "
            f"{b_path} (listed in summary.json under 'unmatched')"
        )
    prompt = get_prompt("pairwise", judge.prompt)
    requests = []
    for p in ps.pairs:
        q, ans_a, ans_b = p.prompt, p.answer_a, p.answer_b
        requests += [prompt.messages(q, ans_a, ans_b), prompt.messages(q, ans_b, ans_a)]
    cache = _cache(judge, out_dir)
    try:
        outcomes = run_judgements(
            requests, prompt, judge, cache, f"pairwise ({len(ps.pairs)} pairs)"
        )
    finally:
        cache.close()

    rows: list[dict] = []
    results: list[str] = []
    lengths: list[tuple[str, int, int]] = []
    invalid_ids: list[str] = []
    by_cat: dict[str, list[str]] = defaultdict(list)
    consistent = 0
    for i, p in enumerate(ps.pairs):
        first, second = outcomes[2 * i], outcomes[2 * i + 1]
        len_a, len_b = len(p.answer_a), len(p.answer_b)
        row = {
            "id": p.id,
            "sample": p.sample,
            "category": p.category,
            "a_then_b": _verdict(first),
            "b_then_a": _verdict(second),
            "len_a": len_a,
            "len_b": len_b,
        }
        if first.label is None or second.label is None:
            row["result"], row["consistent"] = "invalid", None
            invalid_ids.append(p.id)
        else:
            res = metrics.outcome(first.label, second.label)
            alike = metrics.consistent(first.label, second.label)
            row["result"], row["consistent"] = res, alike
            consistent += alike
            results.append(res)
            lengths.append((res, len_a, len_b))
            by_cat[p.category].append(res)
        rows.append(row)

    stats = metrics.pairwise_stats(results, resamples=judge.bootstrap, seed=judge.seed)
    summary: PairwiseSummary = {
        "protocol": "pairwise",
        "a": {"path": str(a_path), "model": ps.a_model},
        "b": {"path": str(b_path), "model": ps.b_model},
        "judge": _judge_info(judge, "pairwise"),
        "pairs": len(ps.pairs),
        **stats,
        **length_controlled(
            rows, ps.a_model, ps.b_model, resamples=judge.bootstrap, seed=judge.seed
        ),
        "consistency": round(consistent / len(results), 6) if results else None,
        "invalid": len(invalid_ids),
        "invalid_ids": invalid_ids[:50],
        **_errors(outcomes),
        "length_bias": metrics.length_bias(lengths),
        "unmatched": {
            "a": len(ps.only_a),
            "b": len(ps.only_b),
            "a_ids": [k[0] for k in ps.only_a[:50]],
            "b_ids": [k[0] for k in ps.only_b[:50]],
        },
        "usage": _usage(outcomes, judge),
        "categories": {cat: _shares(rs) for cat, rs in sorted(by_cat.items())},
    }
    _write(out_dir, rows, summary, judge)
    return summary


def _shares(results: list[str]) -> CategoryShares:
    share = metrics.fractions(results)
    return {
        "n": len(results),
        "win": round(share["win"], 6),
        "tie": round(share["tie"], 6),
        "lose": round(share["lose"], 6),
    }


def _judge_single(
    kind: Literal["rate", "likert"],
    answers_path: str | os.PathLike,
    judge: JudgeConfig,
    out_dir: Path,
    samples: int | None,
) -> tuple[SingleSummary, list[dict], list[str]]:
    """Judge each answer (or its first ``samples`` samples): the summary, the verdict rows and
    the labels given (invalid replies left out); nothing is written yet."""
    answers = read_answers(answers_path)
    keys = [k for k in answers if samples is None or k[1] < samples]
    skipped = len(answers) - len(keys)
    prompt = get_prompt(kind)
    requests = [
        prompt.messages(question_text(answers[k].messages[:-1]), answers[k].answer or "")
        for k in keys
    ]
    cache = _cache(judge, out_dir)
    try:
        outcomes = run_judgements(requests, prompt, judge, cache, f"{kind} ({len(keys)} answers)")
    finally:
        cache.close()

    def score(label: str) -> float:
        return float(RATE_SCORES[label] if kind == "rate" else int(label))

    rows: list[dict] = []
    groups: dict[str, list[float]] = defaultdict(list)
    invalid_ids: list[str] = []
    cat_groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    labels: list[str] = []
    for key, o in zip(keys, outcomes):
        ex = answers[key]
        category = category_of(ex)
        row = {"id": key[0], "sample": key[1], "category": category, **_verdict(o)}
        if o.label is None:
            invalid_ids.append(key[0])
            row["score"] = None
        else:
            value = score(o.label)
            row["score"] = value
            groups[key[0]].append(value)
            cat_groups[category][key[0]].append(value)
            labels.append(o.label)
        rows.append(row)
    per_prompt: dict[str, int] = defaultdict(int)
    for k in keys:
        per_prompt[k[0]] += 1
    summary: SingleSummary = {
        "protocol": kind,
        "answers": {"path": str(answers_path), "model": model_name(answers, answers_path)},
        "judge": _judge_info(judge, kind),
        "judged": len(keys),
        "skipped_samples": skipped,
        "samples_per_prompt": max(per_prompt.values()) if per_prompt else 0,
        **metrics.mean_with_ci(groups, resamples=judge.bootstrap, seed=judge.seed),
        "distribution": {lab: labels.count(lab) for lab in prompt.labels},
        "invalid": len(invalid_ids),
        "invalid_ids": invalid_ids[:50],
        **_errors(outcomes),
        "usage": _usage(outcomes, judge),
        "categories": {
            cat: metrics.mean_with_ci(g, resamples=judge.bootstrap, seed=judge.seed)
            for cat, g in sorted(cat_groups.items())
        },
    }
    return summary, rows, labels


def rate_shares(labels: list[str], *, resamples: int = 1000, seed: int = 0) -> RateShares:
    """The share of Fail / Pass / Excellent among the labels, each with its 95% interval (the
    paper reports these shares).

    >>> rate_shares(["Pass", "Pass", "Fail", "Excellent"])["pass"]
    0.5
    """

    def share(label: str) -> float:
        return round(labels.count(label) / len(labels), 6) if labels else 0.0

    def ci(label: str) -> list[float]:
        return metrics.bootstrap_ci([x == label for x in labels], resamples=resamples, seed=seed)

    return {
        "fail": share("Fail"),
        "fail_ci": ci("Fail"),
        "pass": share("Pass"),
        "pass_ci": ci("Pass"),
        "excellent": share("Excellent"),
        "excellent_ci": ci("Excellent"),
    }


def judge_rate(
    answers_path: str | os.PathLike,
    judge: JudgeConfig,
    out_dir: str | os.PathLike,
    *,
    samples: int | None = None,
) -> RateSummary:
    """Absolute rating Fail / Pass / Excellent (scores 0 / 1 / 2) of every answer (or K samples)."""
    out_dir = Path(out_dir)
    single, rows, labels = _judge_single("rate", answers_path, judge, out_dir, samples)
    summary: RateSummary = {
        **single,
        **rate_shares(labels, resamples=judge.bootstrap, seed=judge.seed),
    }
    _write(out_dir, rows, summary, judge)
    return summary


def judge_likert(
    answers_path: str | os.PathLike,
    judge: JudgeConfig,
    out_dir: str | os.PathLike,
    *,
    samples: int | None = 5,
) -> SingleSummary:
    """1-6 helpfulness of up to ``samples`` answers per prompt; mean with a 95% interval."""
    out_dir = Path(out_dir)
    summary, rows, _labels = _judge_single("likert", answers_path, judge, out_dir, samples)
    _write(out_dir, rows, summary, judge)
    return summary

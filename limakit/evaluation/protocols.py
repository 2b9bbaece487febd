"""The paper's three judging protocols over answer files: pairwise, absolute rating, Likert.

Answer files are the generation stage's JSONL (one Example per answer; ``meta.sample`` numbers the
samples of a prompt, 0 when absent). Each protocol writes ``OUT/verdicts.jsonl`` (every raw reply
kept) and ``OUT/summary.json``, both atomically; the judge cache (``OUT/cache.sqlite`` unless the
config names another) makes a rerun free and a killed run resume.

>>> summary = judge_pairwise("lima.jsonl", "gpt4.jsonl", cfg, "out/lima-vs-gpt4")  # doctest: +SKIP
>>> summary["win"], summary["score"], summary["lc_win_rate"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import limakit.evaluation.metrics as metrics
from limakit.core.console import warn
from limakit.core.files import write_json, write_jsonl
from limakit.evaluation.answers import category_of, model_name, read_answers
from limakit.evaluation.pairs import pair_answers
from limakit.evaluation.prompts import get_prompt
from limakit.judging.cache import JudgeCache
from limakit.judging.config import JudgeConfig
from limakit.judging.prompt import question_text
from limakit.judging.runner import Outcome, run_judgements

RATE_SCORES = {"Fail": 0, "Pass": 1, "Excellent": 2}


def _cache(cfg: JudgeConfig, out_dir: Path) -> JudgeCache:
    return JudgeCache(cfg.cache or out_dir / "cache.sqlite")


def _usage(outcomes: list[Outcome], cfg: JudgeConfig) -> dict:
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


def _judge_info(cfg: JudgeConfig, kind: str) -> dict:
    prompt = get_prompt(kind, cfg.prompt)
    return {"backend": cfg.backend, "model": cfg.model, "prompt": prompt.version}


def _write(out_dir: Path, rows: list[dict], summary: dict, cfg: JudgeConfig) -> None:
    write_jsonl(out_dir / "verdicts.jsonl", rows)
    write_json(out_dir / "summary.json", summary)
    cfg.save(out_dir / "judge.yaml")  # holds the key's variable name only, never the key


def _errors(outcomes: list[Outcome]) -> dict:
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
) -> dict:
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
    return {
        "lc_win_rate": None if lc["lc_win_rate"] is None else round(lc["lc_win_rate"] / 100, 6),
        "lc_win_rate_ci": None if ci is None else [round(x / 100, 6) for x in ci],
        "lc": {
            "reason": lc["reason"],
            "min_pairs": MIN_PAIRS,
            **{k: lc[k] for k in ("formula", "coefficients", "C", "interval") if k in lc},
        },
    }


def judge_pairwise(
    a_path: str | os.PathLike,
    b_path: str | os.PathLike,
    judge: JudgeConfig,
    out_dir: str | os.PathLike,
) -> dict:
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

    rows, results, lengths, invalid_ids = [], [], [], []
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
            row["result"] = res
            row["consistent"] = metrics.consistent(first.label, second.label)
            consistent += row["consistent"]
            results.append(res)
            lengths.append((res, len_a, len_b))
            by_cat[row["category"]].append(res)
        rows.append(row)

    stats = metrics.pairwise_stats(results, resamples=judge.bootstrap, seed=judge.seed)
    summary = {
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
        "categories": {
            cat: {"n": len(rs), **{k: round(v, 6) for k, v in metrics.fractions(rs).items()}}
            for cat, rs in sorted(by_cat.items())
        },
    }
    _write(out_dir, rows, summary, judge)
    return summary


def _judge_single(
    kind: str,
    answers_path: str | os.PathLike,
    judge: JudgeConfig,
    out_dir: str | os.PathLike,
    samples: int | None,
) -> dict:
    out_dir = Path(out_dir)
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

    rows, groups, invalid_ids = [], defaultdict(list), []
    cat_groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    labels: list[str] = []
    for key, o in zip(keys, outcomes):
        ex = answers[key]
        row = {"id": key[0], "sample": key[1], "category": category_of(ex), **_verdict(o)}
        if o.label is None:
            invalid_ids.append(key[0])
            row["score"] = None
        else:
            row["score"] = score(o.label)
            groups[key[0]].append(row["score"])
            cat_groups[row["category"]][key[0]].append(row["score"])
            labels.append(o.label)
        rows.append(row)
    per_prompt = defaultdict(int)
    for k in keys:
        per_prompt[k[0]] += 1
    summary = {
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
    if kind == "rate":
        # The paper reports the share of Fail / Pass / Excellent answers.
        for lab in prompt.labels:
            summary[lab.lower()] = round(labels.count(lab) / len(labels), 6) if labels else 0.0
            summary[f"{lab.lower()}_ci"] = metrics.bootstrap_ci(
                [x == lab for x in labels], resamples=judge.bootstrap, seed=judge.seed
            )
    _write(out_dir, rows, summary, judge)
    return summary


def judge_rate(
    answers_path: str | os.PathLike,
    judge: JudgeConfig,
    out_dir: str | os.PathLike,
    *,
    samples: int | None = None,
) -> dict:
    """Absolute rating Fail / Pass / Excellent (scores 0 / 1 / 2) of every answer (or K samples)."""
    return _judge_single("rate", answers_path, judge, out_dir, samples)


def judge_likert(
    answers_path: str | os.PathLike,
    judge: JudgeConfig,
    out_dir: str | os.PathLike,
    *,
    samples: int | None = 5,
) -> dict:
    """1-6 helpfulness of up to ``samples`` answers per prompt; mean with a 95% interval."""
    return _judge_single("likert", answers_path, judge, out_dir, samples)

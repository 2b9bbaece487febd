"""AlpacaEval 2's length-controlled win rate, on limakit's pairwise verdicts or any table like them.

A judge that likes long answers rewards a model for talking more. The length-controlled (LC) win
rate asks instead: how often would the judge prefer the model if both answers had the same length?
It fits, per model against one baseline, a logistic regression of the judge's preference

    P(model preferred) = logistic(theta + phi * tanh(d))

where ``d`` is ``len(model answer) - len(baseline answer)`` (characters) divided by its standard
deviation over the table, and ``theta`` is the model's own term. The LC win rate is the prediction
at ``d = 0``, in percent. This is AlpacaEval's ``length_controlled_minimal`` formula, fitted the
way AlpacaEval fits it: a tie counts as half a win (the soft label 0.5, each row entered twice, as
a win weighted p and a loss weighted 1 - p), no separate intercept, an L1 penalty whose strength
is chosen among ten values (10^-4 .. 10^4) by 5-fold cross-validation grouped by prompt on the
soft log loss, then refitted on all rows. (AlpacaEval writes the difference as baseline minus model;
only the sign of ``phi`` differs.)

With at least two models judged against the same baseline on the same prompts (three models in
all), an instruction-difficulty term joins the formula, as in AlpacaEval's ``length_controlled_v1``:

    P(model preferred) = logistic(theta + phi * tanh(d) + psi * gamma_x)

``gamma_x`` is one number per prompt, estimated from all the models together (a logistic
regression with a term per model, a length slope per model and a term per prompt, lightly L2
regularised); AlpacaEval ships such difficulties estimated on its own leaderboard, this module
estimates them from the models at hand. The LC win rate is then the mean over prompts of the
prediction at ``d = 0``.

The 95% interval is a percentile bootstrap over prompts (all samples of a prompt stay together):
each resample recomputes the length scale and refits the regression, with the penalty fixed at
the value cross-validation chose on the full table (and the difficulties as estimated on it).

``win_rate`` is AlpacaEval's plain win rate: ``100 * (wins + ties / 2) / n`` over valid verdicts.

>>> rows = [Judged("p1", "m", "base", 1.0, 900, 300), Judged("p2", "m", "base", 0.0, 200, 400)]
>>> round(lc_win_rate(rows * 10, resamples=20)["win_rate"], 1)
50.0
"""

from __future__ import annotations

import functools
import inspect
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from limakit.core.errors import LimaError

MIN_PAIRS = 20  # valid verdicts a fit needs (fewer: the LC rate is "n/a", never a guess)
MEANING = (
    "The length-controlled (LC) win rate is the win rate the judge would give if both answers "
    "had the same length (AlpacaEval 2's logistic fit of the verdicts on the length difference, "
    "read at a difference of zero), so a model cannot raise it just by writing more."
)
CS = np.logspace(-4, 4, 10)  # the penalty grid LogisticRegressionCV searches by default
N_SPLITS = 5
RANDOM_STATE = 123  # AlpacaEval's; liblinear shuffles its coordinates with it
PREFERENCE = {"win": 1.0, "tie": 0.5, "lose": 0.0}


@dataclass(frozen=True)
class Judged:
    """One judged pair: ``preference`` is 1 when the model won, 0 when the baseline did, 0.5 for a
    tie, None when the judge gave no usable verdict (left out of the fit, as AlpacaEval does)."""

    id: str  # the prompt: bootstrap and cross-validation resample prompts
    model: str
    baseline: str
    preference: float | None
    len_model: int
    len_baseline: int


@functools.cache
def _l1_kwargs() -> dict:
    """An L1 penalty in the spelling this scikit-learn understands (``penalty`` left in 1.8)."""
    from sklearn.linear_model import LogisticRegression

    default = inspect.signature(LogisticRegression).parameters["penalty"].default
    return {"l1_ratio": 1.0} if default == "deprecated" else {"penalty": "l1"}


def _both_classes(w: np.ndarray) -> np.ndarray:
    """Sample weights (label-1 copies first, then label-0) where each label keeps some weight: when
    every verdict went one way (a whole table, a fold or a resample of wins only), liblinear would
    warn on stdout about the weightless label; a negligible weight keeps the fit quiet and the
    same."""
    half = len(w) // 2
    if w[:half].any() and w[half:].any():
        return w
    return np.maximum(w, 1e-9)


def _fit(x: np.ndarray, p: np.ndarray, c: float):
    """Soft-label logistic regression (no intercept, L1, liblinear): each row twice, as label 1
    weighted ``p`` and label 0 weighted ``1 - p``."""
    n = len(p)
    return _model(c).fit(
        np.vstack([x, x]),
        np.r_[np.ones(n), np.zeros(n)],
        sample_weight=_both_classes(np.r_[p, 1 - p]),
    )


def _model(c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=c, solver="liblinear", fit_intercept=False, random_state=RANDOM_STATE, **_l1_kwargs()
    )


def _soft_log_loss(p: np.ndarray, q: np.ndarray) -> float:
    q = np.clip(q, 1e-15, 1 - 1e-15)
    return float(-np.mean(p * np.log(q) + (1 - p) * np.log(1 - q)))


def _choose_c(x: np.ndarray, p: np.ndarray, groups: np.ndarray) -> float:
    """The penalty with the best mean held-out soft log loss over 5 folds grouped by prompt
    (the first of equals, the smallest C, as LogisticRegressionCV picks)."""
    from sklearn.model_selection import GroupKFold

    n = len(p)
    xd, gd = np.vstack([x, x]), np.r_[groups, groups]
    yd = np.r_[np.ones(n), np.zeros(n)]
    pd_ = np.r_[p, p]  # both copies of a row carry its own soft label for scoring
    wd = np.r_[p, 1 - p]
    splits = min(N_SPLITS, len(np.unique(groups)))
    if splits < 2:
        return float(CS[-1])
    scores = np.zeros(len(CS))
    for train, test in GroupKFold(n_splits=splits).split(xd, yd, gd):
        for j, c in enumerate(CS):
            w = wd[train]
            if not (w[yd[train] == 1].any() and w[yd[train] == 0].any()):
                w = np.maximum(w, 1e-9)
            model = _model(c).fit(xd[train], yd[train], sample_weight=w)
            q = model.predict_proba(xd[test])[:, 1]
            scores[j] -= _soft_log_loss(pd_[test], q)
    return float(CS[int(np.argmax(scores))])


def _design(
    rows: Sequence[Judged], difficulty: dict[str, float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[tanh(d), 1, (gamma_x)]`` of the valid rows, and the test design at d = 0."""
    delta = np.array([r.len_model - r.len_baseline for r in rows], dtype=float)
    std = delta.std(ddof=1) if len(delta) > 1 else 0.0
    d = delta / std if std > 0 else np.zeros_like(delta)
    cols = [np.tanh(d), np.ones(len(rows))]
    test = [np.zeros(len(rows)), np.ones(len(rows))]
    if difficulty is not None:
        g = np.array([difficulty[r.id] for r in rows])
        cols.append(g)
        test.append(g)
    return np.column_stack(cols), np.column_stack(test)


def _predict(x: np.ndarray, p: np.ndarray, test: np.ndarray, c: float) -> tuple[float, np.ndarray]:
    model = _fit(x, p, c)
    return float(model.predict_proba(test)[:, 1].mean() * 100), model.coef_[0]


def _valid(rows: Sequence[Judged]) -> list[Judged]:
    return [r for r in rows if r.preference is not None and not np.isnan(r.preference)]


def lc_win_rate(
    rows: Sequence[Judged],
    *,
    difficulty: dict[str, float] | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """LC and plain win rates (percent) of one model against one baseline, with 95% intervals.

    ``difficulty`` (prompt id -> gamma) adds the instruction-difficulty term; :func:`lc_table`
    estimates it when several models share the prompts.
    """
    models = {(r.model, r.baseline) for r in rows}
    if len(models) != 1:
        raise LimaError(f"lc_win_rate takes one model and one baseline, got {sorted(models)}")
    model, baseline = models.pop()
    valid = _valid(rows)
    if len(valid) < 2:
        raise LimaError(f"{model} vs {baseline}: fewer than two valid verdicts to fit")
    p = np.array([r.preference for r in valid], dtype=float)
    # Prompts numbered in order of appearance: the grouped folds then match AlpacaEval's, which
    # numbers its rows in table order.
    order: dict[str, int] = {}
    groups = np.array([order.setdefault(r.id, len(order)) for r in valid])
    x, test = _design(valid, difficulty)
    c = _choose_c(x, p, groups)
    lc, coef = _predict(x, p, test, c)

    rng = np.random.default_rng(seed)
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_prompt[int(g)].append(i)
    prompts = list(by_prompt)
    lcs, wins = [], []
    for _ in range(resamples):
        pick = rng.integers(0, len(prompts), size=len(prompts))
        idx = [i for k in pick for i in by_prompt[prompts[k]]]
        wins.append(p[idx].mean() * 100)
        sub = [valid[i] for i in idx]
        xs, ts = _design(sub, difficulty)
        lcs.append(_predict(xs, p[idx], ts, c)[0])
    names = ["length", "model"] + (["instruction_difficulty"] if difficulty is not None else [])
    return {
        "model": model,
        "baseline": baseline,
        "n": len(valid),
        "invalid": len(rows) - len(valid),
        "prompts": len(prompts),
        "wins": int((p > 0.5).sum()),
        "ties": int((p == 0.5).sum()),
        "losses": int((p < 0.5).sum()),
        "win_rate": round(float(p.mean() * 100), 6),
        "win_rate_ci": _percentile(wins),
        "lc_win_rate": round(lc, 6),
        "lc_win_rate_ci": _percentile(lcs),
        "coefficients": {k: round(float(v), 6) for k, v in zip(names, coef)},
        "C": c,
        "formula": "length_controlled_v1 (own difficulties)"
        if difficulty is not None
        else "length_controlled_minimal",
        "interval": f"95% percentile bootstrap over prompts ({resamples} resamples)",
    }


def _percentile(values: list[float]) -> list[float] | None:
    if not values:
        return None
    lo, hi = np.quantile(np.asarray(values), [0.025, 0.975])
    return [round(float(lo), 6), round(float(hi), 6)]


def unfit_reason(rows: Sequence[Judged], min_pairs: int = MIN_PAIRS) -> str | None:
    """Why no LC win rate can be fitted to ``rows`` (one model, one baseline), or None.

    >>> unfit_reason([Judged("p", "m", "b", 1.0, 5, 3)])
    'too few pairs (1 valid verdict, 20 needed)'
    """
    valid = _valid(rows)
    if len(valid) < max(2, min_pairs):
        word = "verdict" if len(valid) == 1 else "verdicts"
        return f"too few pairs ({len(valid)} valid {word}, {max(2, min_pairs)} needed)"
    if len({r.len_model - r.len_baseline for r in valid}) < 2:
        return "no length variation (every pair has the same length difference)"
    return None


def unfitted(rows: Sequence[Judged], reason: str) -> dict:
    """What :func:`lc_win_rate` gives, with the LC figures None and the ``reason`` they are."""
    valid = _valid(rows)
    p = np.array([r.preference for r in valid], dtype=float)
    first = rows[0] if rows else Judged("", "", "", None, 0, 0)
    return {
        "model": first.model,
        "baseline": first.baseline,
        "n": len(valid),
        "invalid": len(rows) - len(valid),
        "prompts": len({r.id for r in valid}),
        "wins": int((p > 0.5).sum()),
        "ties": int((p == 0.5).sum()),
        "losses": int((p < 0.5).sum()),
        "win_rate": round(float(p.mean() * 100), 6) if len(p) else None,
        "win_rate_ci": None,
        "lc_win_rate": None,
        "lc_win_rate_ci": None,
        "reason": reason,
    }


def lc_or_reason(
    rows: Sequence[Judged],
    *,
    difficulty: dict[str, float] | None = None,
    resamples: int = 1000,
    seed: int = 0,
    min_pairs: int = MIN_PAIRS,
) -> dict:
    """:func:`lc_win_rate`, or :func:`unfitted` with the reason when the fit is impossible
    (too few valid verdicts, no variation in the length difference); ``reason`` None otherwise."""
    reason = unfit_reason(rows, min_pairs)
    if reason is not None:
        return unfitted(rows, reason)
    return {**lc_win_rate(rows, difficulty=difficulty, resamples=resamples, seed=seed),
            "reason": None}  # fmt: skip


def instruction_difficulty(rows: Sequence[Judged]) -> dict[str, float]:
    """One difficulty per prompt from all models together (higher: the baseline wins more).

    A soft-label logistic regression with a term and a length slope per model and a term per
    prompt (L2, C = 1, so prompts every model wins stay finite); the prompt terms, negated and
    centred, are the difficulties.
    """
    from sklearn.linear_model import LogisticRegression

    valid = _valid(rows)
    models = sorted({r.model for r in valid})
    prompts = sorted({r.id for r in valid})
    mi, pi = {m: i for i, m in enumerate(models)}, {q: i for i, q in enumerate(prompts)}
    x = np.zeros((len(valid), 2 * len(models) + len(prompts)))
    for m in models:
        sel = [i for i, r in enumerate(valid) if r.model == m]
        sub, _ = _design([valid[i] for i in sel], None)
        x[sel, 2 * mi[m]] = sub[:, 0]
        x[sel, 2 * mi[m] + 1] = 1.0
    for i, r in enumerate(valid):
        x[i, 2 * len(models) + pi[r.id]] = 1.0
    p = np.array([r.preference for r in valid], dtype=float)
    n = len(p)
    fit = LogisticRegression(C=1.0, fit_intercept=False, max_iter=1000)
    fit.fit(np.vstack([x, x]), np.r_[np.ones(n), np.zeros(n)], sample_weight=np.r_[p, 1 - p])
    gamma = -fit.coef_[0][2 * len(models) :]
    gamma = gamma - gamma.mean()
    return {q: float(gamma[pi[q]]) for q in prompts}


def lc_table(
    rows: Iterable[Judged],
    *,
    resamples: int = 1000,
    seed: int = 0,
    difficulty: bool = True,
    min_pairs: int | None = None,
) -> dict[str, dict]:
    """LC win rates of every model in ``rows`` against its baseline.

    When ``difficulty`` and at least two models were judged against the same baseline, the
    instruction-difficulty term is estimated on the prompts they share and used for each of them.
    With ``min_pairs`` set, a model whose fit is impossible (see :func:`unfit_reason`) gets an
    entry with ``lc_win_rate`` None and its ``reason`` instead of an error, and stays out of the
    difficulty estimate; every entry then has a ``reason`` (None when fitted).
    """
    rows = list(rows)
    by_model: dict[tuple[str, str], list[Judged]] = defaultdict(list)
    for r in rows:
        by_model[(r.model, r.baseline)].append(r)
    out: dict[str, dict] = {}
    by_baseline: dict[str, list[str]] = defaultdict(list)
    for m, b in by_model:
        by_baseline[b].append(m)
    for baseline, models in by_baseline.items():
        if min_pairs is not None:
            for m in list(models):
                reason = unfit_reason(by_model[(m, baseline)], min_pairs)
                if reason is not None:
                    out[m] = unfitted(by_model[(m, baseline)], reason)
                    models.remove(m)
        gamma = None
        if difficulty and len(models) >= 2:
            shared = set.intersection(*({r.id for r in by_model[(m, baseline)]} for m in models))
            if len(shared) >= 2:
                gamma = instruction_difficulty(
                    [r for m in models for r in by_model[(m, baseline)] if r.id in shared]
                )
        for m in models:
            sel = by_model[(m, baseline)]
            if gamma is not None:
                sel = [r for r in sel if r.id in gamma]
            if min_pairs is None:
                out[m] = lc_win_rate(sel, difficulty=gamma, resamples=resamples, seed=seed)
            else:
                out[m] = lc_or_reason(
                    sel, difficulty=gamma, resamples=resamples, seed=seed, min_pairs=min_pairs
                )
    return out


def read_verdicts(path: str | os.PathLike, *, baseline: str = "b") -> list[Judged]:
    """The rows of a ``lima judge pairwise`` folder (or its ``verdicts.jsonl``) as :class:`Judged`.

    ``baseline`` says which side of the comparison is the baseline: ``b`` (the default, as in
    ``lima judge pairwise --a MODEL --b BASELINE``) or ``a``.
    """
    from limakit.core.files import read_json, read_jsonl_records

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    verdicts = folder / "verdicts.jsonl" if path.is_dir() else path
    summary = read_json(folder / "summary.json", "summary of a pairwise judging")
    if summary.get("protocol", "pairwise") != "pairwise":
        raise LimaError(f"{folder}: not a pairwise judging (protocol {summary.get('protocol')})")
    if baseline not in ("a", "b"):
        raise LimaError(f"baseline must be 'a' or 'b', not {baseline!r}")
    side = "b" if baseline == "b" else "a"
    other = "a" if side == "b" else "b"
    out = []
    for lineno, row in read_jsonl_records(verdicts):
        try:
            result, la, lb = row["result"], int(row["len_a"]), int(row["len_b"])
        except (KeyError, TypeError, ValueError) as e:
            raise LimaError(f"{verdicts}:{lineno}: not a pairwise verdict ({e})") from None
        pref = PREFERENCE.get(result)
        if pref is not None and side == "a":
            pref = 1.0 - pref
        out.append(
            Judged(
                id=str(row["id"]),  # samples of one prompt resample together
                model=summary[other]["model"],
                baseline=summary[side]["model"],
                preference=pref,
                len_model=la if other == "a" else lb,
                len_baseline=lb if other == "a" else la,
            )
        )
    return out

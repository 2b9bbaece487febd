"""The summaries evaluation writes, typed: one TypedDict per file kind, and one loader per kind.

Each type is the exact shape of a JSON file that users and other tools read, so the types only
name what the writers have always written (field names, nesting, values). A loader reads a file
back, checks it against its type and raises a :class:`LimaError` naming the file and the field
when a field is missing or of the wrong kind (:mod:`limakit.core.shapes`), so a summary written
by hand or cut off never surfaces as a ``KeyError`` deep in a report. Fields a type does not
name are left alone (people's verdicts add their own to the pairwise summary).

- ``summary.json`` of ``lima judge pairwise`` / ``rate`` / ``likert``: :class:`PairwiseSummary`,
  :class:`RateSummary`, :class:`SingleSummary`; read by :func:`load_judge_summary`;
- a run's ``judge/checks.json`` and ``checks-SUBSET.json``: :data:`ChecksFile`, by
  :func:`load_checks`;
- ``summary.json`` of ``lima mt-bench``: :class:`MtBenchSummary`, by :func:`load_mtbench`;
  ``summary_pair.json`` of its pairwise modes: :class:`MtBenchPairSummary`, by
  :func:`load_mtbench_pair`.

>>> load_judge_summary("out/lima-vs-base/summary.json")["win"]  # doctest: +SKIP
0.52
"""

# No ``from __future__ import annotations`` here: TypedDict reads ``NotRequired`` off evaluated
# annotations only.
import os
from typing import Any, Literal

from typing_extensions import NotRequired, TypedDict, final

from limakit.core.errors import LimaError
from limakit.core.shapes import checked, read_checked
from limakit.evaluation.metrics import LengthBias, MeanScore, Measure, PairwiseStats

# ---------------------------------------------------------------- lima judge pairwise / rate / likert


class Side(TypedDict):
    """One side of a comparison, or the answers rated: the answer file and its model's name."""

    path: str
    model: str


class JudgeInfo(TypedDict):
    """Who judged: the backend (``human`` for people's verdicts), model and prompt version."""

    backend: str
    model: str
    prompt: str


class Usage(TypedDict):
    """The judge calls a summary cost; ``cost`` only where the config gives token prices."""

    calls: int
    cached: int
    retries: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None


class Failures(TypedDict):
    """Judge calls that failed for good (after retries), and the first failure's message."""

    errors: int
    first_error: str | None


class LcInfo(TypedDict):
    """The length-controlled fit: why it could not be made (``reason``, else None), and its
    details when it was. An ablation's figures also carry ``n`` and a ``formula`` that is None
    where no fit was made."""

    reason: str | None
    min_pairs: int
    formula: NotRequired[str | None]
    coefficients: NotRequired[dict[str, float]]
    C: NotRequired[float]
    interval: NotRequired[str]
    n: NotRequired[int]


class LengthControlled(TypedDict):
    """The LC win rate and its 95% interval as fractions (like ``win``), None when the fit is
    impossible, with the fit's :class:`LcInfo`."""

    lc_win_rate: float | None
    lc_win_rate_ci: list[float] | None
    lc: LcInfo


class Unmatched(TypedDict):
    """Answers of one side with no partner in the other: counts, and the first 50 ids."""

    a: int
    b: int
    a_ids: list[str]
    b_ids: list[str]


class CategoryShares(TypedDict):
    n: int
    win: float
    tie: float
    lose: float


class PairwiseSummary(PairwiseStats, LengthControlled, Failures):
    """``summary.json`` of ``lima judge pairwise`` (and of people's verdicts, which add their own
    fields: ``annotators``, ``agreement``...). Shares are those of model A."""

    protocol: Literal["pairwise"]
    a: Side
    b: Side
    judge: JudgeInfo
    pairs: int
    consistency: float | None  # share of pairs judged alike in both orders
    invalid: int
    invalid_ids: list[str]
    length_bias: LengthBias
    unmatched: Unmatched
    usage: Usage
    categories: dict[str, CategoryShares]


class SingleSummary(MeanScore, Failures):
    """``summary.json`` of ``lima judge likert`` (and the part of ``rate``'s it shares): the mean
    score over prompts, each prompt's samples averaged first."""

    protocol: Literal["rate", "likert"]
    answers: Side
    judge: JudgeInfo
    judged: int
    skipped_samples: int
    samples_per_prompt: int
    distribution: dict[str, int]  # label -> answers given it, in the prompt's label order
    invalid: int
    invalid_ids: list[str]
    usage: Usage
    categories: dict[str, MeanScore]


# The paper reports the share of Fail / Pass / Excellent answers ("pass" is a keyword in Python).
RateShares = TypedDict(
    "RateShares",
    {
        "fail": float,
        "fail_ci": list[float],
        "pass": float,
        "pass_ci": list[float],
        "excellent": float,
        "excellent_ci": list[float],
    },
)


class RateSummary(SingleSummary, RateShares):
    """``summary.json`` of ``lima judge rate``: the Likert fields, then each label's share."""


JudgeSummary = PairwiseSummary | SingleSummary

# ---------------------------------------------------------------- judge-free checks


class LengthStats(TypedDict):
    mean: float | None
    median: float | None
    p90: float | None
    min: float | None
    max: float | None


class ReferenceCounts(TypedDict):
    """Where the reference answers came from: the ``file`` (None: none given) or the answers'
    own ``meta.reference``."""

    file: str | None
    file_without_reference: int
    from_file: int
    from_answers: int
    prompts_without: int


class AnswerChecks(TypedDict):
    """The judge-free checks of one answer file (:func:`~limakit.evaluation.checks.auto_checks`)."""

    answers: str
    n: int
    prompts: int
    measures: dict[str, Measure]  # in MEASURES order
    stop: dict[str, int]  # stop reason -> answers
    role_breaks: dict[str, int]  # rule -> answers
    length_chars: LengthStats
    length_words: LengthStats
    new_tokens: LengthStats
    references: ReferenceCounts
    ifbench: NotRequired[dict[str, Any]]  # IFBench's scores, where its prompts were answered


ChecksFile = dict[str, AnswerChecks]  # ``judge/checks*.json``: system name -> its checks

# ---------------------------------------------------------------- MT-Bench


class AnswerFiles(TypedDict):
    """The questions and every model's answer file (in ``OUT/model_answer/``), with the file
    each was copied from."""

    questions: str
    answers: dict[str, str]
    answers_from: dict[str, str]


@final
class AnswersOnly(AnswerFiles):
    """What ``lima mt-bench`` gives without a judge (no summary file is written then)."""


class MtJudge(TypedDict):
    model: str
    file: str  # the judgment file, FastChat's ``model_judgment/<judge>_single|pair.jsonl``


class MtCounts(TypedDict):
    """This run's judge calls; ``first_error`` once the judge was asked, ``incomplete`` (pairs
    with one game in) once pairs were."""

    judged: int
    unparsable: int
    skipped: int
    errors: int
    first_error: NotRequired[str | None]
    incomplete: NotRequired[int]


class MtStat(TypedDict):
    mean: float | None
    ci: list[float] | None
    n: int


class MtTurns(TypedDict):
    turn1: MtStat
    turn2: MtStat
    both: MtStat


class MtModel(TypedDict):
    """One model's grades: per turn, overall (FastChat's MT-Bench score) and per category."""

    turn1: MtStat
    turn2: MtStat
    overall: MtStat
    judged: int
    unparsable: int
    categories: dict[str, MtTurns]
    questions: NotRequired[int]  # for the models given in this run
    unanswered: NotRequired[int]


class MtBenchSummary(AnswerFiles):
    """``summary.json`` of ``lima mt-bench`` (single-answer grading)."""

    judge: MtJudge
    counts: MtCounts
    models: dict[str, MtModel]


class MtPairStats(TypedDict):
    """FastChat's pairwise counts of one model, and the adjusted win rate's 95% interval."""

    win: int
    loss: int
    tie: int
    win_rate: float
    loss_rate: float
    win_rate_adjusted: float
    win_rate_adjusted_ci: list[float] | None
    left_out: int  # rows with an unparsable game


class MtBenchPairSummary(AnswerFiles):
    """``summary_pair.json`` of ``lima mt-bench --mode pairwise-baseline|pairwise-all``."""

    mode: str  # pairwise-baseline or pairwise-all
    baseline: str | None  # None in pairwise-all
    judge: MtJudge
    counts: MtCounts
    pairwise: dict[str, MtPairStats]  # best adjusted win rate first
    plot: str | None


# ---------------------------------------------------------------- loaders

PROTOCOLS = {"pairwise": PairwiseSummary, "rate": RateSummary, "likert": SingleSummary}


def load_judge_summary(path: str | os.PathLike) -> JudgeSummary:
    """A ``summary.json`` of ``lima judge pairwise``, ``rate`` or ``likert``, checked against
    the type of its ``protocol`` (people's verdicts from ``lima annotate`` read as pairwise)."""
    data = read_checked(path, dict[str, Any], "summary of lima judge")
    if "protocol" not in data:
        raise LimaError(f"{path}: field 'protocol' is missing (expected a summary of lima judge)")
    protocol = data["protocol"]
    if protocol not in PROTOCOLS:
        known = ", ".join(PROTOCOLS)
        raise LimaError(f"{path}: unknown protocol {protocol!r} (one of {known})")
    summary: JudgeSummary = checked(data, PROTOCOLS[protocol], path, f"{protocol} summary")
    return summary


def load_checks(path: str | os.PathLike) -> ChecksFile:
    """A run's ``judge/checks.json`` (or ``checks-SUBSET.json``): system name -> its checks."""
    checks: ChecksFile = read_checked(path, ChecksFile, "file of judge-free checks")
    return checks


def load_mtbench(path: str | os.PathLike) -> MtBenchSummary:
    """``summary.json`` of ``lima mt-bench``, checked."""
    summary: MtBenchSummary = read_checked(path, MtBenchSummary, "summary of lima mt-bench")
    return summary


def load_mtbench_pair(path: str | os.PathLike) -> MtBenchPairSummary:
    """``summary_pair.json`` of ``lima mt-bench --mode pairwise-*``, checked."""
    summary: MtBenchPairSummary = read_checked(
        path, MtBenchPairSummary, "pairwise summary of lima mt-bench"
    )
    return summary

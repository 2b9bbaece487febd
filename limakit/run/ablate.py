"""``lima ablate``: the paper's three data ablations (Figures 5 and 6) on the user's own model.

- **quantity**: ``2^k`` examples drawn from the same pool, for every k in a range;
- **quality**: the pool filtered by LIMA's rules vs unfiltered, same size and source;
- **diversity**: mixed sources (or prompts) vs one homogeneous source, same size;
- **custom**: named arms, each a list of overrides (training options such as Instruction
  Modelling's ``train.prompt_loss_weight`` or Response Tuning's ``train.drop_prompts``, a data
  filter, anything a run config holds).

Every arm is a ``lima run`` of one base run config with a few overrides (its data), so training,
sampling and judging settings and seeds are identical across arms; with several ``seeds``, every
arm runs once per seed. Arms share a stage cache: an arm equal to another (quality's filtered arm
is often a quantity arm) costs nothing. Each arm's answers are scored 1-6 by the judge (Likert);
the report plots the mean per arm with a 95% bootstrap interval over prompts and says plainly
whether intervals overlap. Where the arms were also judged pairwise against a baseline, it shows
each arm's score (win + tie/2) and length-controlled win rate against it. Every arm's judge-free
measures (``judge/checks.json``) are shown too, and its token-distribution shift against the base
model where its run measured one (``shift/shift.json``).

>>> report = ablate(load_ablate_config("configs/ablate-cpu.yaml"), Path("ablate"))  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, model_validator

from limakit.core.config import Config, apply_overrides, format_validation_error, read_yaml_mapping
from limakit.core.console import console
from limakit.core.errors import LimaError
from limakit.core.files import read_json, read_jsonl_records, write_json
from limakit.run.config import resolve_ref

# Where a run keeps the fine-tuned model's judge-free measures and, when it measured one, its
# token-distribution shift against the base model (``limakit.evaluation.shift.shift_summary``).
CHECKS_FILE = "judge/checks.json"
SHIFT_FILE = "shift/shift.json"


class QuantityAblation(Config):
    """Training sets of 2^k examples from the same pool (the paper: 2K to 32K from Stack Exchange)."""

    enabled: bool = Field(True, description="Run this ablation.")
    k: tuple[int, int] = Field((3, 5), description="Smallest and largest k (n = 2^k), inclusive.")

    @model_validator(mode="after")
    def _range(self) -> QuantityAblation:
        if not 0 <= self.k[0] <= self.k[1] <= 20:
            raise ValueError("k must be [low, high] with 0 <= low <= high <= 20")
        return self


class QualityAblation(Config):
    """Rules-filtered vs unfiltered examples of the same size and source."""

    enabled: bool = Field(True, description="Run this ablation.")
    n: int | None = Field(None, ge=1, description="Examples per arm (None: quantity's largest).")
    filtered: list[str] = Field(
        default_factory=lambda: ["data.curate.select=lima-rules"],
        description="Overrides of the filtered arm.",
    )
    unfiltered: list[str] = Field(
        default_factory=lambda: ["data.curate.select=random"],
        description="Overrides of the unfiltered arm (select=random keeps only hygiene rules).",
    )


class DiversityAblation(Config):
    """Mixed sources vs one homogeneous source of the same size (the paper: Stack Exchange vs
    wikiHow)."""

    enabled: bool = Field(True, description="Run this ablation.")
    n: int | None = Field(None, ge=1, description="Examples per arm (None: quantity's largest).")
    mixed: list[str] = Field(default_factory=list, description="Overrides of the mixed arm.")
    homogeneous: list[str] = Field(
        default_factory=list,
        description="Overrides of the homogeneous arm, e.g. one source, or data.prompt_filter.",
    )

    @model_validator(mode="after")
    def _arms(self) -> DiversityAblation:
        if self.enabled and not self.homogeneous:
            raise ValueError("diversity: give the homogeneous arm's overrides (or enabled: false)")
        return self


class BacktranslationAblation(Config):
    """Seed only vs seed + back-translated pairs after each round (Humpback's comparison): the
    curated data is the seed of ``data.backtranslate`` (set in the base run or in ``set``)."""

    enabled: bool = Field(False, description="Run this ablation (it needs texts to translate).")
    n: int | None = Field(
        None, ge=1, description="Seed examples per arm (None: quantity's largest)."
    )
    rounds: int = Field(2, ge=1, description="Arms: the seed alone, then seed + rounds 1..R.")
    set: list[str] = Field(
        default_factory=list,
        description="Overrides configuring data.backtranslate for the grown arms, e.g. "
        "data.backtranslate.texts=[docs/].",
    )


def dir_part(name: str) -> str:
    """An arm's name as part of a folder name: ``plw=0.1`` -> ``plw0.1``, spaces -> ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name.replace("=", "")).strip("-")


class CustomAblation(Config):
    """Named arms of one base run, each with its own overrides, applied after ``set``: for
    instance the prompt loss weight (Instruction Modelling) or answers without their prompts
    (Response Tuning)."""

    enabled: bool = Field(True, description="Run this ablation.")
    n: int | None = Field(None, ge=1, description="Examples per arm (None: quantity's largest).")
    arms: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Arm name -> its overrides, e.g. {plw=0.1: [train.prompt_loss_weight=0.1]}; "
        "an arm without overrides is the base run itself.",
    )

    @model_validator(mode="after")
    def _arms(self) -> CustomAblation:
        if self.enabled and not self.arms:
            raise ValueError("custom: give at least one arm (name: [overrides])")
        seen: dict[str, str] = {}
        for name in self.arms:
            part = dir_part(name)
            if not part:
                raise ValueError(f"custom: arm name {name!r} needs a letter or digit")
            if part in seen:
                raise ValueError(f"custom: arms {seen[part]!r} and {name!r} would share the "
                                 f"folder name {part!r}; rename one")  # fmt: skip
            seen[part] = name
        return self


class AblateConfig(Config):
    """One base run config and the arms made from it."""

    run: str = Field(..., description="Base run config (relative to the ablation file).")
    set: list[str] = Field(default_factory=list, description="Overrides applied to every arm.")
    seeds: list[int] = Field(default_factory=lambda: [0], description="Each arm once per seed.")
    quantity: QuantityAblation = Field(default_factory=QuantityAblation)
    quality: QualityAblation = Field(default_factory=QualityAblation)
    diversity: DiversityAblation = Field(default_factory=DiversityAblation)
    backtranslation: BacktranslationAblation = Field(default_factory=BacktranslationAblation)
    custom: CustomAblation | None = Field(
        None, description="Named arms with their own overrides (training options and the like)."
    )

    @model_validator(mode="after")
    def _some(self) -> AblateConfig:
        on = (self.quantity, self.quality, self.diversity, self.backtranslation, self.custom)
        if not any(a is not None and a.enabled for a in on):
            raise ValueError("every ablation is disabled")
        if not self.seeds:
            raise ValueError("seeds: give at least one")
        return self


def load_ablate_config(path: str, overrides: list[str] | tuple[str, ...] = ()) -> AblateConfig:
    from pydantic import ValidationError

    p = resolve_ref(str(path))
    data = apply_overrides(read_yaml_mapping(p), overrides)
    if isinstance(data.get("run"), str):
        data["run"] = str(resolve_ref(data["run"], p.resolve().parent))
    try:
        return AblateConfig.model_validate(data)
    except ValidationError as e:
        raise LimaError(format_validation_error(str(path), e, AblateConfig)) from None


@dataclass(frozen=True)
class Arm:
    ablation: str  # quantity | quality | diversity | backtranslation | custom
    arm: str  # "n=8", "filtered", "homogeneous", a custom arm's name...
    seed: int
    n: int
    overrides: tuple[str, ...]

    @property
    def dir_name(self) -> str:
        return f"{self.ablation}-{dir_part(self.arm)}-seed{self.seed}"


def plan_arms(cfg: AblateConfig) -> list[Arm]:
    largest = 2 ** cfg.quantity.k[1]
    arms: list[tuple[str, str, int, list[str]]] = []
    if cfg.quantity.enabled:
        for k in range(cfg.quantity.k[0], cfg.quantity.k[1] + 1):
            arms.append(("quantity", f"n={2**k}", 2**k, []))
    if cfg.quality.enabled:
        n = cfg.quality.n or largest
        arms += [("quality", "filtered", n, cfg.quality.filtered),
                 ("quality", "unfiltered", n, cfg.quality.unfiltered)]  # fmt: skip
    if cfg.diversity.enabled:
        n = cfg.diversity.n or largest
        arms += [("diversity", "mixed", n, cfg.diversity.mixed),
                 ("diversity", "homogeneous", n, cfg.diversity.homogeneous)]  # fmt: skip
    if cfg.backtranslation.enabled:
        bt = cfg.backtranslation
        n = bt.n or largest
        arms.append(("backtranslation", "seed", n, ["data.backtranslate=null"]))
        for k in range(1, bt.rounds + 1):
            grown = [*bt.set, f"data.backtranslate.rounds={k}"]
            arms.append(("backtranslation", f"round-{k}", n, grown))
    if cfg.custom is not None and cfg.custom.enabled:
        n = cfg.custom.n or largest
        arms += [("custom", name, n, own) for name, own in cfg.custom.arms.items()]
    out = []
    for seed in cfg.seeds:
        for ablation, arm, n, own in arms:
            seeds = [f"data.curate.seed={seed}", f"train.seed={seed}", f"sample.seed={seed}"]
            # The judgement every arm is scored by; the rest of the evaluation as configured.
            fixed = [f"data.curate.n={n}", *seeds, "evaluate.likert=true"]
            out.append(Arm(ablation, arm, seed, n, (*cfg.set, *own, *fixed)))
    return out


def arm_scores(run_dir: Path) -> dict[str, list[float]]:
    """Likert scores of the fine-tuned model's answers, by prompt id."""
    path = run_dir / "judge" / "likert-model" / "verdicts.jsonl"
    groups: dict[str, list[float]] = defaultdict(list)
    for _, row in read_jsonl_records(path):
        if row.get("score") is not None:
            groups[str(row["id"])].append(float(row["score"]))
    return groups


def arm_pairwise(run_dir: Path) -> dict[str, list[dict]]:
    """The fine-tuned model's pairwise verdicts, by baseline (``judge/pairwise-NAME/``)."""
    out = {}
    for d in sorted((run_dir / "judge").glob("pairwise-*")):
        if (d / "verdicts.jsonl").exists():
            rows = [row for _, row in read_jsonl_records(d / "verdicts.jsonl")]
            out[d.name.removeprefix("pairwise-")] = rows
    return out


def arm_checks(run_dir: Path) -> dict:
    """The run's judge-free figures of the fine-tuned model's answers: ``measures`` (name ->
    ``{value, ci, n}``, from ``judge/checks.json``) and ``shift`` (its token-distribution shift
    against the base, from ``shift/shift.json``), each None where the run has none."""
    from limakit.evaluation.summaries import load_checks

    checks = run_dir / CHECKS_FILE
    model = load_checks(checks).get("model") if checks.exists() else None
    out: dict = {"measures": model["measures"] if model else None, "shift": None}
    if (run_dir / SHIFT_FILE).exists():
        summary = read_json(run_dir / SHIFT_FILE)
        mine = [f for f in summary["files"] if Path(f["answers"]).name == "model.jsonl"]
        if mine:
            out["shift"] = {"base": summary["base"],
                            **{k: mine[0][k] for k in ("unshifted", "marginal", "shifted",
                                                       "decoding")}}  # fmt: skip
    return out


def ablate(cfg: AblateConfig, out: Path) -> Path:
    """Run every arm (resumable, cached), then write ``out/report.md`` with the plots."""
    from limakit.evaluation import metrics
    from limakit.run import execute
    from limakit.run.config import run_config_data, validate_run_config

    out = Path(out)
    arms = plan_arms(cfg)
    configs = []
    for arm in arms:  # every arm's config is checked before the first one trains
        data, where = run_config_data(cfg.run, arm.overrides)
        run_cfg = validate_run_config(data, f"{where} (arm {arm.dir_name})")
        if run_cfg.data.curate is None:
            raise LimaError(f"{cfg.run}: ablations draw from a pool: the run needs data.curate")
        configs.append(run_cfg)
    write_json(out / "arms.json", [{"dir": f"arms/{a.dir_name}", "overrides": list(a.overrides)}
                                   for a in arms])  # fmt: skip
    for i, (arm, run_cfg) in enumerate(zip(arms, configs), start=1):
        console().rule(f"[bold]arm {i}/{len(arms)}: {arm.ablation} {arm.arm} (seed {arm.seed})")
        execute(run_cfg, out / "arms" / arm.dir_name, cache=out / "cache")

    judge = configs[0].judge
    resamples, seed = (judge.bootstrap, judge.seed) if judge else (1000, 0)
    results: dict[str, list[dict]] = defaultdict(list)
    by_key: dict[tuple[str, str], dict] = {}
    for arm in arms:
        key = (arm.ablation, arm.arm)
        if key not in by_key:
            by_key[key] = {"ablation": arm.ablation, "arm": arm.arm, "examples": arm.n, "groups": {},
                           "runs": [], "pairwise": {}, "checks": []}  # fmt: skip
            results[arm.ablation].append(by_key[key])
        entry = by_key[key]
        entry["runs"].append(f"arms/{arm.dir_name}")
        entry["checks"].append({"run": f"arms/{arm.dir_name}", "seed": arm.seed,
                                **arm_checks(out / "arms" / arm.dir_name)})  # fmt: skip
        for pid, scores in arm_scores(out / "arms" / arm.dir_name).items():
            entry["groups"].setdefault(pid, []).extend(scores)  # seeds pooled per prompt
        for baseline, rows in arm_pairwise(out / "arms" / arm.dir_name).items():
            entry["pairwise"].setdefault(baseline, []).extend(rows)  # seeds pooled too
    from limakit.run.ablation_report import pairwise_figures, write_ablation_report

    for rows in results.values():
        for r in rows:
            r.update(metrics.mean_with_ci(r.pop("groups"), resamples=resamples, seed=seed))
        pairwise_figures(rows, resamples=resamples, seed=seed)
    write_json(out / "ablations.json", results)

    return write_ablation_report(results, cfg, out)

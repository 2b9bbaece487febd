"""The run config: one YAML file from raw data (or a ready examples file) to a report.

Sections reuse the stage configs (``data.curate`` is a :class:`CurateConfig`, ``train`` a
:class:`TrainConfig`, ``judge`` a :class:`JudgeConfig`). Three conveniences keep configs short and
their departures visible:

- ``extends: other.yaml`` starts from another run config (deep-merged; this file wins);
- a section may be a file name (``train: demo-train.yaml``) or ``{from: FILE, key: value...}``;
  both ``extends`` and ``from`` are relative to the file that names them;
- ``set: [key.sub=value, ...]`` applies overrides in order, after the file, before ``--set``.

Any string ``packaged:NAME`` is a file shipped inside limakit (``limakit/data/NAME``), so a packaged
config works from an installed wheel. Other relative data paths are relative to the working folder.

>>> cfg = load_run_config("packaged:configs/demo-cpu.yaml", ["train.epochs=1"])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from limakit.backtranslate.config import BacktranslateConfig
from limakit.core.config import (
    Config,
    apply_overrides,
    format_validation_error,
    read_yaml_mapping,
)
from limakit.core.errors import LimaError
from limakit.curation.config import CurateConfig
from limakit.generation.config import DecodeConfig
from limakit.judging.config import JudgeConfig
from limakit.training.config import TrainConfig

PACKAGED = "packaged:"
SECTION_FILES = (("train",), ("judge",), ("select", "judge"), ("data", "curate"))


def packaged_path(name: str) -> Path:
    """``configs/demo-cpu.yaml`` -> the file shipped in limakit/data."""
    p = Path(str(resources.files("limakit.data"))) / name
    if not p.exists():
        raise LimaError(f"{PACKAGED}{name}: no such packaged file")
    return p


def resolve_ref(ref: str, base: Path | None = None) -> Path:
    if ref.startswith(PACKAGED):
        return packaged_path(ref[len(PACKAGED) :])
    p = Path(ref)
    return p if p.is_absolute() or base is None else base / p


class DataSection(Config):
    """Where the training examples come from: curation from raw data, or a ready file."""

    curate: CurateConfig | None = Field(
        None, description="Curation of raw dumps (its `out` is the run's data/ folder)."
    )
    examples: str | None = Field(
        None, description="A ready examples file (limakit JSONL) instead of curation."
    )
    prompt_filter: str | None = Field(
        None,
        description="Keep only curated examples whose prompt matches this regex (case-"
        "insensitive), then draw curate.n of them: a homogeneous arm from a mixed pool.",
    )
    backtranslate: BacktranslateConfig | None = Field(
        None,
        description="Grow the data by instruction back-translation (`lima backtranslate`): the "
        "curated or ready examples are the seed, and training reads the seed plus the kept "
        "pairs. Its `seed` and `out` are set by the run; its `train` defaults to the run's.",
    )

    @model_validator(mode="after")
    def _one(self) -> DataSection:
        if (self.curate is None) == (self.examples is None):
            raise ValueError("give exactly one of data.curate or data.examples")
        if self.prompt_filter is not None:
            if self.curate is None:
                raise ValueError("data.prompt_filter works on curated data (data.curate)")
            try:
                re.compile(self.prompt_filter)
            except re.error as e:
                raise ValueError(f"prompt_filter is not a valid regex ({e})") from None
        return self


class SelectSection(Config):
    """Checkpoint choice on the dev set (``lima select``): the paper judges epochs 5-10."""

    enabled: bool = Field(True, description="Judge dev answers per epoch; false = last epoch.")
    dev: str = Field(
        "curated",
        description="Dev prompts (with reference answers for pairwise), or 'curated' for the "
        "curation's dev split (needs data.curate.splits=true).",
    )
    reference: str | None = Field(None, description="Reference answers file for pairwise.")
    epochs: list[int] | None = Field(None, description="Epochs judged (None: every epoch kept).")
    protocol: Literal["pairwise", "likert"] = Field(
        "pairwise", description="Pairwise against references, or 1-6 Likert."
    )
    samples: int = Field(1, ge=1, description="Answers per dev prompt.")
    max_new_tokens: int | None = Field(
        None, ge=1, description="Dev answers' token cap (None: sample.decode's)."
    )
    judge: JudgeConfig | None = Field(
        None, description="Judge of the checkpoint choice (None: the run's `judge`)."
    )


class SampleSection(Config):
    """Answers to the test prompts from the chosen checkpoint and the baselines."""

    prompts: str = Field(
        ..., description="Test prompts file (limakit JSONL, last turn the user's)."
    )
    limit: int | None = Field(None, ge=1, description="Use only the first N prompts.")
    samples: int = Field(1, ge=1, description="Answers per prompt.")
    seed: int = Field(0, description="Sampling seed (each prompt and sample has its own stream).")
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    backend: Literal["hf", "vllm"] = Field("hf", description="limakit's engine, or vLLM.")
    device: str = Field("auto", description="auto (cuda when present), cpu, cuda:N.")
    dtype: str = Field("auto", description="Weights dtype for sampling (auto: bf16 where fast).")
    batch_size: int = Field(16, ge=1, description="Sequences decoded together.")
    subsets: dict[str, str] = Field(
        default_factory=dict,
        description="Named prompt sets sampled apart from `prompts`, e.g. {safety: "
        "packaged:safety/prompts.jsonl}: the model and every sampled baseline answer them into "
        "answers/NAME.SUBSET.jsonl; their judge-free measures (refusal, over_refusal...) go to "
        "judge/checks-SUBSET.json and the report. `limit` does not apply to them.",
    )

    @field_validator("subsets")
    @classmethod
    def _subset_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
                raise ValueError(f"subset name {name!r}: use letters, digits, '_' and '-'")
        return v


class Baseline(Config):
    """Something to compare the fine-tuned model with: exactly one of model, answers, run."""

    name: str = Field(..., description="Short name: answers/NAME.jsonl, judge/pairwise-NAME/.")
    model: str | None = Field(None, description="A model sampled like the fine-tuned one.")
    answers: str | None = Field(None, description="A ready answers file for the same prompts.")
    run: str | None = Field(None, description="Another run directory: its fine-tuned answers.")
    template: Literal["auto", "own", "limakit"] | None = Field(
        None,
        description="Chat format the model is sampled in: its own chat template (own), limakit's, "
        "or auto (its own when it has one and is not a limakit checkpoint). None: "
        "sample.decode.template.",
    )
    kind: Literal["plain", "in-context"] | None = Field(
        None,
        description="A pretrained model used without training (`model`, default: the run's "
        "train.model): plain (prompted as plain Question/Answer text) or in-context (URIAL's "
        "in-context alignment: a fixed preamble and `shots` example exchanges drawn from the "
        "training examples). None: `model` sampled in `template`.",
    )
    shots: int = Field(3, ge=1, le=16, description="Example exchanges of the in-context kind.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v) or v == "model":
            raise ValueError("use letters, digits, '_', '.', '-' (and not 'model')")
        return v

    @model_validator(mode="after")
    def _one(self) -> Baseline:
        if self.kind is not None:
            if self.answers is not None or self.run is not None or self.template is not None:
                raise ValueError(f"baseline {self.name!r}: kind {self.kind} samples a model in "
                                 "its own layout (no answers, run or template)")  # fmt: skip
        elif sum(x is not None for x in (self.model, self.answers, self.run)) != 1:
            raise ValueError(f"baseline {self.name!r}: give exactly one of model, answers, run")
        return self


class EvaluateSection(Config):
    """Which judgements the run makes (the judge is the `judge` section)."""

    pairwise: bool = Field(True, description="Fine-tuned vs each baseline, both orders.")
    likert: bool = Field(False, description="1-6 helpfulness of every answer set.")
    rate: bool = Field(False, description="Fail / Pass / Excellent of every answer set.")
    checks: bool = Field(True, description="Judge-free checks: EOT stops, length, repetition.")
    shift: bool = Field(
        True,
        description="Token-distribution shift (URIAL) of the fine-tuned answers against the base "
        "model, when a baseline samples train.model (the base the run fine-tunes): shift/.",
    )


class RuntimeSection(Config):
    """Where every stage's model runs, decided in one place; a stage's own ``device`` /
    ``dtype`` field (``sample.device``, ``judge.dtype``...) still wins where it is set."""

    device: str = Field("auto", description="auto (cuda when present), cpu, cuda, cuda:N.")
    dtype: str = Field("auto", description="auto (bfloat16 where fast, else float32), bfloat16, "
                       "float32.")  # fmt: skip


class RunConfig(Config):
    """Everything ``lima run`` does, stage by stage."""

    name: str = Field("lima", description="Label of the fine-tuned model in answers and reports.")
    runtime: RuntimeSection = Field(
        default_factory=RuntimeSection,
        description="Device and dtype of every stage that loads a model (sampling, checkpoint "
        "choice, a local judge, pool selection, back-translation), unless the stage sets its "
        "own. Training's devices come from its launcher (accelerate).",
    )
    data: DataSection
    train: TrainConfig
    launch: list[str] | None = Field(
        None,
        description="Command that starts the training processes, e.g. [accelerate, launch, "
        "--num_processes, '8']; `-m limakit train ...` is appended. None: train in this process.",
    )
    select: SelectSection = Field(default_factory=SelectSection)
    sample: SampleSection
    baselines: list[Baseline] = Field(default_factory=list)
    judge: JudgeConfig | None = Field(None, description="The judge (selection and evaluation).")
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    notes: list[str] = Field(
        default_factory=list, description="Departures from the paper, printed in the report."
    )
    cache: str | None = Field(
        None, description="Shared stage cache folder (hard links): runs reuse equal stages."
    )
    allow_short_cap: bool = Field(
        False,
        description="Let a sampling cap (select.max_new_tokens, sample.decode.max_new_tokens) "
        "fall below the longest trained answer. Off: such a run refuses to train or sample, "
        "since answers cut at the cap cannot show whether the model learned to stop. The "
        "report prints it when on.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        names = [b.name for b in self.baselines]
        if len(set(names)) != len(names):
            raise ValueError(f"baseline names repeat: {names}")
        judged = (self.select.enabled and self.select.judge is None) or any(
            (self.evaluate.likert, self.evaluate.rate, self.evaluate.pairwise and names)
        )
        if judged and self.judge is None:
            raise ValueError("a `judge` section is needed (selection or judging is on)")
        if self.select.enabled and self.select.dev == "curated":
            if self.data.curate is None or not self.data.curate.splits:
                raise ValueError("select.dev=curated needs data.curate with splits: true")
        self._apply_runtime()
        self._curate_for_training()
        for b in self.baselines:  # a pretrained-model baseline is the run's base by default
            if b.kind is not None and b.model is None:
                b.model = self.train.model
        return self

    def _curate_for_training(self) -> None:
        """Curation measures examples in the training tokens and rejects those over
        ``train.max_len`` (rule too_long), unless the curate section sets its own."""
        cur = self.data.curate
        if cur is None:
            return
        if not cur.tokenizer:
            cur.tokenizer = self.train.model
        if "max_len" not in cur.model_fields_set:
            cur.max_len = self.train.max_len

    def shift_base(self) -> str | None:
        """The base model the fine-tuned answers are ranked under (``evaluate.shift``): the run's
        ``train.model`` when some baseline samples it, else None (no base in the run)."""
        if not self.evaluate.shift:
            return None
        sampled = {b.model for b in self.baselines if b.model is not None}
        return self.train.model if self.train.model in sampled else None

    def sampling_caps(self) -> dict[str, int]:
        """Every token cap the run samples under, by where it is set."""
        caps = {"sample.decode.max_new_tokens": self.sample.decode.max_new_tokens}
        if self.select.enabled and self.select.max_new_tokens is not None:
            caps["select.max_new_tokens"] = self.select.max_new_tokens
        return caps

    def _apply_runtime(self) -> None:
        """Give each model-loading section the runtime's device / dtype where the runtime sets
        one and the section does not: one decision, carried to every stage (and its key)."""
        given = self.runtime.model_fields_set & {"device", "dtype"}
        cur, bt = self.data.curate, self.data.backtranslate
        sections = [self.sample, self.judge, self.select.judge, cur and cur.selection,
                    bt and bt.augment, bt and bt.rate]  # fmt: skip
        for section in sections:
            for name in given:
                if section is not None and name not in section.model_fields_set:
                    setattr(section, name, getattr(self.runtime, name))


def _deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _deep_merge(base.get(k), v) if k in base else v
        return out
    return over


def _expand(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict, list[str]]:
    """The file's mapping with ``extends`` and section files merged in; its ``set`` lists."""
    real = path.resolve()
    if real in seen:
        raise LimaError(f"{path}: `extends` loops back to itself")
    data = read_yaml_mapping(path)
    base_dir = real.parent
    sets: list[str] = []
    parent = data.pop("extends", None)
    own_sets = data.pop("set", None) or []
    if not isinstance(own_sets, list) or not all(isinstance(s, str) for s in own_sets):
        raise LimaError(f"{path}: `set` must be a list of key=value strings")
    for keys in SECTION_FILES:
        node = data
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if not isinstance(node, dict) or keys[-1] not in node:
            continue
        value = node[keys[-1]]
        if isinstance(value, str):
            value = {"from": value}
        if isinstance(value, dict) and "from" in value:
            rest = {k: v for k, v in value.items() if k != "from"}
            node[keys[-1]] = _deep_merge(
                read_yaml_mapping(resolve_ref(value["from"], base_dir)), rest
            )
    if parent is not None:
        pdata, psets = _expand(resolve_ref(str(parent), base_dir), (*seen, real))
        data = _deep_merge(pdata, data)
        sets += psets
    return data, sets + own_sets


def _packaged_strings(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(PACKAGED):
        return str(packaged_path(value[len(PACKAGED) :]))
    if isinstance(value, list):
        return [_packaged_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: _packaged_strings(v) for k, v in value.items()}
    return value


def run_config_data(
    path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[dict, str]:
    """The merged mapping of a run config (before validation) and where it came from."""
    p = resolve_ref(str(path))
    data, sets = _expand(p)
    data = apply_overrides(data, [*sets, *overrides])
    return data, str(path)


def validate_run_config(data: dict, where: str) -> RunConfig:
    try:
        return RunConfig.model_validate(_packaged_strings(data))
    except ValidationError as e:
        raise LimaError(format_validation_error(where, e, RunConfig)) from None


def load_run_config(
    path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    """Load a run config file (``packaged:NAME`` allowed), then ``key=value`` overrides."""
    data, where = run_config_data(path, overrides)
    return validate_run_config(data, where)


def training_data(cfg: RunConfig) -> str:
    """The run file training reads: the data stage's examples, or back-translation's."""
    return "backtranslate/examples.jsonl" if cfg.data.backtranslate else "data/examples.jsonl"


def prompts_path(cfg: RunConfig, root: Path) -> Path:
    """The test prompts a run samples: the curated test split, or the file ``sample.prompts``."""
    curated = cfg.sample.prompts == "curated"
    return root / "data" / "test.jsonl" if curated else Path(cfg.sample.prompts)

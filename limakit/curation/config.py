"""The curation config: sources, quotas, rules, sampling, dedup, decontamination and splits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model, model_validator

from limakit.core.config import Config
from limakit.curation.pool_select_config import SelectionConfig
from limakit.curation.rules import RulesConfig
from limakit.sources.natural_instructions import NaturalInstructionsConfig
from limakit.sources.reddit import RedditConfig
from limakit.sources.registry import sources
from limakit.sources.se_source import StackExchangeConfig
from limakit.sources.wikihow import WikiHowConfig

__all__ = [
    "CurateConfig",
    "DecontaminationConfig",
    "DedupConfig",
    "NaturalInstructionsConfig",
    "RedditConfig",
    "StackExchangeConfig",
    "WikiHowConfig",
]

_SOURCES = sources(freeze=True)  # the config's fields are made from the registry, once

# The paper's mix (LIMA.md section 1): 1,000 training examples.
PAPER_QUOTAS = {b: q for s in _SOURCES for b, q in s.buckets.items()}

# Which rules each source gets by default: the paper filters Stack Exchange hardest; other
# sources were chosen for their quality, so they get hygiene only.
DEFAULT_RULES = {k: list(v) for s in _SOURCES for k, v in s.rules.items()}


class DedupConfig(Config):
    """Exact and near-duplicate removal (MinHash LSH)."""

    exact: bool = Field(True, description="Drop examples whose normalised prompt was seen.")
    near: bool = Field(True, description="Drop near-duplicates by MinHash LSH on prompt+answer.")
    threshold: float = Field(0.8, description="Estimated Jaccard similarity counted as duplicate.")
    num_perm: int = Field(128, description="MinHash permutations.")
    shingle: int = Field(5, description="Word shingle size.")


class DecontaminationConfig(Config):
    """Removal of examples overlapping evaluation prompts."""

    against: list[str] = Field(
        default_factory=list, description="JSONL prompt sets (any of prompt/turns/messages/...)."
    )
    n: int = Field(13, description="Word n-gram length; one shared n-gram counts as overlap.")
    fields: Literal["prompt", "both"] = Field(
        "both", description="Check the prompt or prompt+answer."
    )


class _Selection(Config):
    """The fields between the sources' inputs and their options (see :data:`CurateConfig`)."""

    skip_invalid: bool = Field(
        False,
        description="A pool record that breaks the format rules goes to rejected.jsonl (rule "
        "invalid_record, with its reason) instead of stopping the curation.",
    )
    sharegpt_turns: Literal["first", "all"] = Field(
        "first", description="ShareGPT: first pair or all."
    )
    select: Literal[
        "lima-rules", "longest", "random", "diverse", "clusters", "judge-rated", "deita", "ifd"
    ] = Field(
        "lima-rules",
        description="Selection over general pools (ShareGPT, any `lima convert` format): LIMA's "
        "general rules then a seeded sample, or one selector (see limakit.curation.selectors).",
    )
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    n: int = Field(1000, description="Training examples to select.")
    quotas: dict[str, int] = Field(
        default_factory=lambda: dict(PAPER_QUOTAS),
        description="Relative share of each bucket; scaled to n over the buckets present.",
    )
    seed: int = Field(0, description="Seed for every random choice.")
    tau: float = Field(3.0, description="Exchange sampling temperature: P ~ size^(1/tau).")
    out: str = Field("curated", description="Output folder.")
    rules: RulesConfig = Field(default_factory=RulesConfig)
    rules_by_source: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_RULES.items()},
        description="Rule names applied to each source.",
    )


class _Output(Config):
    """The fields after the sources' options."""

    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontaminate: DecontaminationConfig = Field(default_factory=DecontaminationConfig)
    splits: bool = Field(False, description="Write dev.jsonl and test.jsonl.")
    dev: int = Field(50, description="Hand-written examples held out as the dev set.")
    dev_from: Literal["manual", "any"] = Field(
        "manual",
        description="Where the dev set (and `test`) is held out from: the hand-written examples "
        "(the paper), or any source (a run without enough hand-written examples).",
    )
    test: int = Field(
        0,
        ge=0,
        description="Examples held out with their answers into test.jsonl, after the dev set and "
        "from the same sources, beside the prompt-only test records: test prompts whose answers "
        "serve as references (`reference_similarity`).",
    )
    max_len: int | None = Field(
        None,
        ge=8,
        description="Training length in tokens: an example whose conversation, rendered in the "
        "training template, exceeds it is rejected (rule too_long) instead of trimmed by "
        "training. Needs `tokenizer`. A run config sets both from its train section.",
    )
    tokenizer: str | None = Field(
        None, description="Model (alias, folder or hub id) whose tokenizer measures max_len."
    )
    progress: bool = Field(True, description="Show progress bars on long reads.")


class _CurateBase(Config):
    """Everything ``lima curate`` needs; defaults are the paper's.

    Each registered source has a list of inputs (``wikihow: [...]``) and, when it has options,
    their section (``wikihow_options: {...}``); ``wikihow: {files: [...], columns: {...}}`` is
    the same as the two.

    >>> cfg = CurateConfig(stackexchange=["dumps/"], n=100, out="curated")
    """

    @model_validator(mode="before")
    @classmethod
    def _source_sections(cls, data):
        """``<field>: {files: [...], <option>: ...}`` is the files plus ``<options_field>``."""
        if not isinstance(data, dict):
            return data
        for src in _SOURCES:
            key = src.options_key
            if key and isinstance(data.get(src.field), dict):
                section = dict(data[src.field])
                data = {**data, src.field: section.pop("files", [])}
                data[key] = {**(data.get(key) or {}), **section}
        return data

    @model_validator(mode="after")
    def _length(self):
        if getattr(self, "max_len", None) is not None and not getattr(self, "tokenizer", None):
            raise ValueError("max_len needs `tokenizer` (the model whose tokens it counts)")
        return self


def _fields(model: type[Config]) -> dict:
    return {name: (f.annotation, f) for name, f in model.model_fields.items()}


def _source_fields(part: str) -> dict:
    if part == "inputs":
        return {
            s.field: (list[str], Field(default_factory=list, description=s.description))
            for s in _SOURCES
        }
    return {
        s.options_key: (s.options_model(), Field(default_factory=s.options_model()))
        for s in _SOURCES
        if s.options_key
    }


# The sources' inputs first, then the selection settings, the sources' options, the outputs.
CurateConfig = create_model(
    "CurateConfig",
    __base__=_CurateBase,
    __module__=__name__,
    __doc__=_CurateBase.__doc__,
    **_source_fields("inputs"),
    **_fields(_Selection),
    **_source_fields("options"),
    **_fields(_Output),
)

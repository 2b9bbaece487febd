"""The curation config: sources, quotas, rules, sampling, dedup, decontamination and splits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from limakit.config import Config
from limakit.curation.rules import DEFAULT_RULES, RulesConfig
from limakit.curation.selection_config import SelectionConfig

# The paper's mix (LIMA.md section 1): 1,000 training examples.
PAPER_QUOTAS = {
    "stackexchange_stem": 200,
    "stackexchange_other": 200,
    "wikihow": 200,
    "writingprompts": 150,
    "natural_instructions": 50,
    "manual": 200,
    "pool": 1000,
}


class StackExchangeConfig(Config):
    """Stack Exchange reading and sampling."""

    pool_per_site: int = Field(
        1000, description="Keep texts for at most this many best-scored questions per site."
    )
    include_meta: bool = Field(
        False,
        description="Also read meta sites (cstheory.meta.stackexchange.com, meta.stackoverflow.com, "
        "meta.stackexchange.com...), which discuss the site itself (policy, scope, bugs). LIMA "
        "drew from the main exchanges only: by default a meta site is skipped and counted in "
        "the funnel under the rule meta_site.",
    )
    prompt_from: Literal["random", "title", "body"] = Field(
        "random", description="Prompt = the question's title or body; 'random' picks per question."
    )
    title_probability: float = Field(0.5, description="With prompt_from=random: P(title).")
    size_by: Literal["questions", "eligible"] = Field(
        "questions",
        description="Exchange size for temperature sampling: its questions, or its examples "
        "that passed the rules.",
    )
    site_groups: str | None = Field(
        None, description="YAML file mapping site -> group (stem/other); default: the shipped one."
    )
    unknown_group: str = Field("other", description="Group of a site missing from the mapping.")
    examine_all_below: int = Field(
        500,
        description="With fewer ranked pairs than this in a bucket, clean and check them all (a "
        "complete funnel); above it, only those the sampler reaches (fast on big dumps).",
    )


class RedditConfig(Config):
    """Reddit (Pushshift) reading."""

    tags: list[str] = Field(
        default_factory=lambda: ["WP"], description="WritingPrompts title tags kept."
    )
    pool: int = Field(1000, description="Keep stories for at most this many best-scored prompts.")
    min_story_score: int = Field(0, description="Best story comment must score >= this.")
    test_prompts: int = Field(70, description="AskReddit titles kept as test prompts.")


class WikiHowConfig(Config):
    """wikiHow reading: which columns of the file hold what (see limakit.sources.wikihow)."""

    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Role -> column name in your CSV (or key in your JSONL); roles: title (the "
        "prompt), text (a whole article per row), step and heading (one step per row, rows "
        "grouped by title), category. Empty: the layout is read from the header "
        "(headline,title,text; title,heading,paragraph; title,result).",
    )
    add_how_to: bool = Field(
        True, description="Put 'How to ' in front of titles that lack it (title,result has none)."
    )


class NaturalInstructionsConfig(Config):
    """Super-NaturalInstructions task selection."""

    generation_only: bool = Field(True, description="Keep only generation-task categories.")
    categories: list[str] | None = Field(
        None, description="Categories counted as generation (default: the built-in list)."
    )
    languages: list[str] = Field(
        default_factory=lambda: ["English"], description="Task input languages kept (empty: all)."
    )


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


class CurateConfig(Config):
    """Everything ``lima curate`` needs; defaults are the paper's.

    >>> cfg = CurateConfig(stackexchange=["dumps/"], n=100, out="curated")
    """

    @model_validator(mode="before")
    @classmethod
    def _wikihow_section(cls, data):
        """``wikihow: {files: [...], columns: {...}}`` is the files plus ``wikihow_options``."""
        if isinstance(data, dict) and isinstance(data.get("wikihow"), dict):
            section = dict(data["wikihow"])
            data = {**data, "wikihow": section.pop("files", [])}
            data["wikihow_options"] = {**(data.get("wikihow_options") or {}), **section}
        return data

    stackexchange: list[str] = Field(
        default_factory=list, description="Site folders / .7z / parents."
    )
    wikihow: list[str] = Field(
        default_factory=list,
        description="wikiHow CSV (wikihowAll, per-step or title,result layouts) or JSONL files.",
    )
    reddit: list[str] = Field(default_factory=list, description="Pushshift NDJSON(.zst) files.")
    natural_instructions: list[str] = Field(default_factory=list, description="SNI task folders.")
    manual: list[str] = Field(default_factory=list, description="Hand-written YAML/JSONL files.")
    sharegpt: list[str] = Field(
        default_factory=list, description="ShareGPT JSON files, or 'packaged' for the shipped pool."
    )
    pool: list[str] = Field(default_factory=list, description="Example-format JSONL pools.")
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
    se: StackExchangeConfig = Field(default_factory=StackExchangeConfig)
    reddit_options: RedditConfig = Field(default_factory=RedditConfig)
    wikihow_options: WikiHowConfig = Field(default_factory=WikiHowConfig)
    sni: NaturalInstructionsConfig = Field(default_factory=NaturalInstructionsConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontaminate: DecontaminationConfig = Field(default_factory=DecontaminationConfig)
    splits: bool = Field(False, description="Write dev.jsonl and test.jsonl.")
    dev: int = Field(50, description="Hand-written examples held out as the dev set.")
    progress: bool = Field(True, description="Show progress bars on long reads.")

"""The back-translation config: texts and their hygiene, the models, augmentation, rating, rounds.

Every field has a default except the seed and the texts::

    cfg = load_config(BacktranslateConfig, "bt.yaml", ["rounds=1", "threshold=4"])
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from limakit.core.config import Config
from limakit.curation.config import DecontaminationConfig, DedupConfig
from limakit.curation.rules import RulesConfig
from limakit.generation.config import DecodeConfig
from limakit.judging.config import JudgeConfig
from limakit.sources.registry import ALL_RULES
from limakit.training.config import TrainConfig

# LIMA's rules that make sense for an answer without its question. The score rules act only where
# scores are known (Stack Exchange, while the dump is read); the others on every text.
TEXT_RULES = list(ALL_RULES)  # every rule a source can name: see the registry

SEED_TAG = "Answer in the style of an AI Assistant."
AUGMENTED_TAG = "Answer with knowledge from web search."


class HygieneConfig(Config):
    """What is done to the texts before any model sees them; every drop is counted by rule."""

    rules: list[str] = Field(
        default_factory=lambda: list(TEXT_RULES),
        description="LIMA rules (limakit.curation.rules) run on each text as if it were an answer.",
    )
    limits: RulesConfig = Field(
        default_factory=RulesConfig,
        description="Thresholds of those rules: min/max_answer_chars are the text length bounds; "
        "min_answer_score/min_question_score apply to Stack Exchange answers.",
    )
    dedup: DedupConfig = Field(
        default_factory=DedupConfig,
        description="Exact and MinHash near-duplicate removal, against the seed answers first, "
        "then among the texts (the first text of a duplicate group is kept).",
    )
    decontaminate: DecontaminationConfig = Field(
        default_factory=DecontaminationConfig,
        description="Drop texts sharing an n-gram with these evaluation prompt sets.",
    )
    text_field: str = Field("text", description="Field holding the text in JSONL inputs.")
    se_pool: int = Field(
        1000, ge=1, description="Stack Exchange: answers read per site (best-scored questions)."
    )
    max_texts: int | None = Field(
        None, ge=1, description="Keep at most this many texts after hygiene (a seeded sample)."
    )


class AugmentConfig(Config):
    """Self-augmentation: the backward model writes one instruction per text."""

    decode: DecodeConfig = Field(
        default_factory=lambda: DecodeConfig(max_new_tokens=128),
        description="Decoding of the instructions: LIMA's (top-p 0.9, T 0.7, penalty 1.2) by "
        "default; temperature=0 for greedy.",
    )
    backend: Literal["hf", "vllm"] = Field(
        "hf", description="Built-in continuous-batching engine, or vLLM for large runs."
    )
    batch_size: int = Field(16, ge=1, description="Sequences decoded together (hf engine).")
    device: str = Field("auto", description="Device of the backward model: auto, cpu, cuda:N.")
    dtype: str = Field("auto", description="Weights dtype while sampling (auto: bf16 where fast).")
    max_text_tokens: int = Field(
        1024,
        ge=16,
        description="A text is cut to this many tokens in the backward model's prompt (the pair "
        "kept and rated holds the whole text).",
    )
    drop_cut_off: bool = Field(
        True,
        description="Drop an instruction that hit max_new_tokens before the end-of-turn token "
        "(rule instruction_cut_off); false keeps it.",
    )


class RateConfig(Config):
    """Self-curation: the rater and what it reads."""

    rater: Literal["forward", "judge"] = Field(
        "forward",
        description="forward: the model trained on the seed (retrained each round on seed + "
        "kept pairs) reads its own probabilities of the scores 1-5; judge: the `judge` config "
        "(an OpenAI-compatible endpoint or a local model) writes its reasons and a score.",
    )
    judge: JudgeConfig | None = Field(
        None, description="The judge config when rater=judge (as for `lima judge`)."
    )
    threshold: int = Field(
        5, ge=1, le=5, description="Keep a pair whose score is at least this (the paper: 5)."
    )
    device: str = Field("auto", description="Device of the forward model when it rates.")
    dtype: str = Field("float32", description="Weights dtype of the forward model when it rates.")
    batch_size: int = Field(8, ge=1, description="Forward model: ratings per forward pass.")
    max_prompt_tokens: int = Field(
        2048, ge=64, description="Forward model: rating prompts are left-trimmed to this."
    )


class BacktranslateConfig(Config):
    """Instruction back-translation with self-curation (Li et al. 2023, "Humpback")."""

    seed: str | None = Field(
        None,
        description="Seed pairs (limakit JSONL): instruction and answer. Required, except in "
        "`lima run`'s data.backtranslate, where the seed is the run's data (curated or ready).",
    )
    texts: list[str] = Field(
        ...,
        min_length=1,
        description="Unlabelled texts: .txt/.md files or folders of them, JSONL with a text "
        "field, Stack Exchange dumps (a site folder with Posts.xml, a .7z, or a folder of sites; "
        "the answers are used, their questions kept aside for the card).",
    )
    out: str = Field("backtranslated", description="Output folder.")
    rounds: int = Field(
        2,
        ge=1,
        description="Self-curation rounds; round k > 1 retrains the forward model on the seed and "
        "the pairs round k - 1 kept, then rates every pair again.",
    )
    train: TrainConfig = Field(
        default_factory=TrainConfig,
        description="Training of the backward and forward models (model = the base model; "
        "data is set per model).",
    )
    hygiene: HygieneConfig = Field(default_factory=HygieneConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    rate: RateConfig = Field(default_factory=RateConfig)
    system_tags: bool = Field(
        False,
        description=f"Mark each pair with a system turn: {SEED_TAG!r} for the seed, "
        f"{AUGMENTED_TAG!r} for the augmented pairs (in the output and the forward training).",
    )
    embedder: str = Field(
        "all-minilm-l6-v2",
        description="Sentence embedder of the card's instruction-quality figure.",
    )
    embed_device: str = Field("auto", description="Device of the embedder.")
    random_seed: int = Field(0, description="Seed of every random choice (sampling, baselines).")
    progress: bool = Field(True, description="Progress bars on stderr.")

    @model_validator(mode="after")
    def _judge_needed(self) -> BacktranslateConfig:
        if self.rate.rater == "judge" and self.rate.judge is None:
            raise ValueError("rate.rater=judge needs rate.judge (a judge config)")
        return self

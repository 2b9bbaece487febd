"""Judging: one component for every LLM-judge call limakit makes.

``lima judge``'s protocols and MT-Bench's grading (evaluation), curation's scores and
back-translation's ratings all ask a judge through the same pieces:

- :class:`JudgeConfig`: which model judges, through which backend (an OpenAI-compatible endpoint,
  or a local transformers model read through its label probabilities);
- :class:`JudgeCache`: an SQLite cache of replies keyed by judge, prompt version and inputs;
- :mod:`~limakit.judging.prompt`: versioned prompt files and the strict verdict parser;
- :func:`run_judgements`: the loop (concurrency, retries, one more try on an unreadable reply),
  which caches a reply only after its verdict parses.

>>> from limakit.judging import JudgeConfig, ScalePrompt, load_prompt_file, PROMPT_DIR
>>> cfg = JudgeConfig(backend="local", model="smollm2-135m")
>>> prompt = ScalePrompt(load_prompt_file(PROMPT_DIR / "likert-v1.txt", "likert"), 6)
>>> prompt.parse("Thorough and correct. [[6]]")
'6'
"""

from __future__ import annotations

from limakit.judging.cache import JudgeCache, cache_key
from limakit.judging.config import JudgeConfig
from limakit.judging.prompt import (
    LABELS,
    PROMPT_DIR,
    Prompt,
    ScalePrompt,
    load_prompt_file,
    parse_verdict,
    question_text,
)
from limakit.judging.runner import Outcome, run_judgements

__all__ = [
    "LABELS",
    "PROMPT_DIR",
    "JudgeCache",
    "JudgeConfig",
    "Outcome",
    "Prompt",
    "ScalePrompt",
    "cache_key",
    "load_prompt_file",
    "parse_verdict",
    "question_text",
    "run_judgements",
]

"""Self-curation: a rater scores each (instruction, text) pair on the paper's 5-point scale.

The prompt is ``limakit/judging/prompts/backtranslate-rating-v1.txt`` (its version, file name plus
a hash of its text, keys the reply cache). Calls go through the judging component (:mod:`limakit.judging`): its OpenAI-
compatible client (retries, one more try on an unreadable reply) or its local backend, which reads
the probabilities of the scores after ``[[`` instead of generating reasons. Replies are committed to
an SQLite cache as they arrive, so a killed rating resumes with the pairs not yet rated.

The parser is strict: a reply is a score only when it holds exactly one ``[[N]]`` with N an
integer from 1 to 5 and no other double bracket; anything else is unparsable and never kept.

>>> parse_score("Focused and complete.\\n[[5]]")
5
>>> [parse_score(t) for t in ("[[6]]", "[[4.5]]", "[[5]] [[5]]", "Score: 5", "[[ 3 ]]")]
[None, None, None, None, 3]
"""

from __future__ import annotations

import re
from pathlib import Path

from limakit.judging.cache import JudgeCache
from limakit.judging.config import JudgeConfig
from limakit.judging.prompt import PROMPT_DIR, ScalePrompt, load_prompt_file
from limakit.judging.runner import run_judgements

PROMPT_FILE = "backtranslate-rating-v1.txt"
_SCORE = re.compile(r"\[\[\s*([1-5])\s*\]\]")


def parse_score(text: object) -> int | None:
    """The one score 1-5 in ``[[N]]``, or None for anything else (see the module docstring)."""
    if not isinstance(text, str) or text.count("[[") != 1 or text.count("]]") != 1:
        return None
    m = _SCORE.search(text)
    return int(m.group(1)) if m else None


def reasons_of(text: str) -> str:
    """The reply without its score: what the rater said in support of it."""
    return _SCORE.sub("", text).strip()


def _strict_score(text: str) -> str | None:
    score = parse_score(text)
    return None if score is None else str(score)


def rating_prompt() -> ScalePrompt:
    """The rating prompt, read by the strict :func:`parse_score`."""
    return ScalePrompt(load_prompt_file(PROMPT_DIR / PROMPT_FILE, "likert"), 5, _strict_score)


def forward_judge(model: str, rate_cfg) -> JudgeConfig:
    """A local judge config for the forward model (a checkpoint folder or an alias)."""
    return JudgeConfig(
        backend="local",
        model=model,
        dtype=rate_cfg.dtype,
        device=rate_cfg.device,
        batch_size=rate_cfg.batch_size,
        max_prompt_tokens=rate_cfg.max_prompt_tokens,
    )


def rate_pairs(
    pairs: list[dict], judge: JudgeConfig, cache_path: Path, what: str = "rating"
) -> list[dict]:
    """One rating row per pair ``{"id", "instruction", "text"}``, in order:
    ``{"id", "score" (int or None), "reasons", "raw", "probs", "error", "calls"}``."""
    prompt = rating_prompt()
    requests = [prompt.messages(p["instruction"], p["text"]) for p in pairs]
    cache = JudgeCache(cache_path)
    try:
        outcomes = run_judgements(requests, prompt, judge, cache, what)
    finally:
        cache.close()
    rows = []
    for p, o in zip(pairs, outcomes):
        score = int(o.label) if o.label is not None else None
        last = o.raw[-1] if o.raw else ""
        rows.append(
            {
                "id": p["id"],
                "score": score,
                "reasons": reasons_of(last) if score is not None else "",
                "raw": o.raw,
                "probs": o.probs,
                "error": o.error,
                "calls": o.calls,
                "prompt": prompt.version,
            }
        )
    return rows

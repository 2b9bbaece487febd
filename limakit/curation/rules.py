"""LIMA's quality rules, each a named pure predicate: ``rule(example, cfg) -> reason | None``.

A rule returns ``None`` when the example passes and a short human reason when it rejects it, so
every rejection can be written down with the rule's name and why. Thresholds and phrase lists come
from :class:`RulesConfig`, whose defaults are the paper's.

>>> from limakit.records.example import Example, Message
>>> ex = Example([Message("user", "Why?"), Message("assistant", "I think so.")])
>>> first_person(ex, RulesConfig())
"first-person word 'I'"
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from pydantic import Field

from limakit.core.config import Config
from limakit.records.example import SAFETY_TAG, Example
from limakit.sources.se_source import META_SITE

FIRST_PERSON = ["I", "I'm", "I've", "I'd", "I'll", "me", "my", "mine", "myself"]
META_PHRASES = [
    "as mentioned",
    "as others have",
    "as noted above",
    "as stated above",
    "stack exchange",
    "stackexchange",
    "stack overflow",
    "stackoverflow",
    "this answer",
    "other answer",
    "other answers",
    "previous answer",
    "answer above",
    "answers above",
    "above answer",
    "accepted answer",
    "this site",
    "edit:",
    "update:",
    "upvote",
    "downvote",
    "in the comments",
    "the op",
    "op's",
]


class RulesConfig(Config):
    """Thresholds and phrase lists of the quality rules (defaults: the LIMA paper)."""

    min_answer_score: int = Field(
        10, description="Stack Exchange: top answer score must be >= this."
    )
    min_question_score: int | None = Field(
        0, description="Stack Exchange: question score must be >= this (null: no threshold)."
    )
    min_answer_chars: int = Field(
        1200, description="Answer length lower bound, in characters of the cleaned Markdown."
    )
    max_answer_chars: int = Field(
        4096, description="Answer length upper bound, in characters of the cleaned Markdown."
    )
    first_person_words: list[str] = Field(
        default_factory=lambda: list(FIRST_PERSON),
        description="Words marking a first-person answer ('I' forms match case-sensitively).",
    )
    meta_phrases: list[str] = Field(
        default_factory=lambda: list(META_PHRASES),
        description="Phrases by which an answer refers to other answers or to the site.",
    )
    check_code: bool = Field(
        False, description="Also look for first-person words inside code blocks and inline code."
    )
    drop_tags: list[str] = Field(
        default_factory=list,
        description="Reject every example whose meta.tags holds one of these names (rule "
        "drop_tags, counted in the funnel), e.g. [safety]: the arm without safety examples.",
    )


_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.S)


def _prose(text: str, cfg: RulesConfig) -> str:
    """The text without code: ``for I in range`` or ``my_var`` in code is not first person."""
    return text if cfg.check_code else _CODE.sub(" ", text)


@lru_cache(maxsize=64)
def _word_pattern(words: tuple[str, ...]) -> re.Pattern:
    # "I"-forms are case-sensitive (so "i.e." and roman "i" items stay out); others are not.
    parts = []
    for w in words:
        esc = re.escape(w).replace("'", "['\u2019]")
        parts.append(esc if w[:1] == "I" else f"(?i:{esc})")
    return re.compile(r"(?<![\w'\u2019])(" + "|".join(parts) + r")(?![\w'\u2019])")


def _find_phrase(text: str, phrases: tuple[str, ...]) -> str | None:
    """The first phrase found as whole words (case-insensitive), by plain substring search.

    One big case-insensitive alternation regex took milliseconds per answer; ``str.find`` on the
    lowered text plus a boundary check is a hundred times faster.
    """
    lowered = text.lower()
    best: tuple[int, str] | None = None
    for phrase in phrases:
        p = phrase.lower()
        start = lowered.find(p)
        while start >= 0:
            end = start + len(p)
            left_ok = not p[:1].isalnum() or start == 0 or not lowered[start - 1].isalnum()
            right_ok = not p[-1:].isalnum() or end == len(lowered) or not lowered[end].isalnum()
            if left_ok and right_ok:
                if best is None or start < best[0]:
                    best = (start, text[start:end])
                break
            start = lowered.find(p, start + 1)
    return best[1] if best else None


def empty(ex: Example, cfg: RulesConfig) -> str | None:
    """Reject an example with no messages or a blank prompt/answer."""
    if not ex.messages:
        return "no messages"
    for i, m in enumerate(ex.messages, start=1):
        if not isinstance(m.content, str) or not m.content.strip():
            return f"message {i} ({m.role}) is empty"
    return None


def encoding(ex: Example, cfg: RulesConfig) -> str | None:
    """Reject text that was not valid UTF-8 (replacement chars, lone surrogates) or holds NULs."""
    for i, m in enumerate(ex.messages, start=1):
        text = m.content
        if "\ufffd" in text:
            return f"message {i} holds U+FFFD (bytes that were not valid UTF-8)"
        if "\x00" in text:
            return f"message {i} holds a NUL character"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            return f"message {i}: undecodable byte at character {e.start}"
    return None


def answer_score(ex: Example, cfg: RulesConfig) -> str | None:
    """Reject answers scored below ``min_answer_score`` (only when the source has scores)."""
    score = ex.meta.get("answer_score")
    if score is not None and score < cfg.min_answer_score:
        return f"answer score {score} < {cfg.min_answer_score}"
    return None


def question_score(ex: Example, cfg: RulesConfig) -> str | None:
    """Reject questions scored below ``min_question_score`` (only when the source has scores)."""
    score = ex.meta.get("question_score")
    if score is not None and cfg.min_question_score is not None and score < cfg.min_question_score:
        return f"question score {score} < {cfg.min_question_score}"
    return None


def answer_length(ex: Example, cfg: RulesConfig) -> str | None:
    """Reject answers outside [min_answer_chars, max_answer_chars] (the final assistant turn)."""
    answer = ex.answer or ""
    n = len(answer)
    if n < cfg.min_answer_chars:
        return f"answer has {n} characters < {cfg.min_answer_chars}"
    if n > cfg.max_answer_chars:
        return f"answer has {n} characters > {cfg.max_answer_chars}"
    return None


def first_person(ex: Example, cfg: RulesConfig) -> str | None:
    """Reject answers written in the first person ("I", "my", "me" as words), outside code."""
    pattern = _word_pattern(tuple(cfg.first_person_words))
    for m in ex.messages:
        if m.role == "assistant":
            hit = pattern.search(_prose(m.content, cfg))
            if hit:
                return f"first-person word {hit.group(0)!r}"
    return None


def meta_reference(ex: Example, cfg: RulesConfig) -> str | None:
    """Reject answers that refer to other answers or to the site ("as mentioned", "edit:"...)."""
    phrases = tuple(cfg.meta_phrases)
    for m in ex.messages:
        if m.role == "assistant":
            hit = _find_phrase(_prose(m.content, cfg), phrases)
            if hit:
                return f"refers to other answers or the site: {hit!r}"
    return None


Rule = Callable[[Example, RulesConfig], "str | None"]

RULES: dict[str, Rule] = {
    "empty": empty,
    "encoding": encoding,
    "question_score": question_score,
    "answer_score": answer_score,
    "answer_length": answer_length,
    "first_person": first_person,
    "meta_reference": meta_reference,
}

# Rules decided for a whole Stack Exchange site before any of it is read; the funnel counts one
# rejection per site (``rejected.jsonl`` names the site and its archive or folder). Which rules
# each source gets by default is part of its registration (limakit.sources.registry).
SITE_RULES: dict[str, str] = {"meta_site": META_SITE}

# The rules that remove refusals from community answers: a declining answer speaks for itself
# ("I can't help with that, because..."), so the first-person rule drops it. An example tagged
# ``safety`` is a refusal on purpose (LIMA wrote its 13 in the first person), and these rules pass
# it; every other rule (hygiene, scores, length, references to other answers) still applies.
REFUSAL_RULES = ("first_person",)


def check(ex: Example, names: list[str], cfg: RulesConfig) -> tuple[str, str] | None:
    """Run the named rules in order; return ``(rule, reason)`` for the first that rejects.

    ``cfg.drop_tags`` rejects a tagged example first (rule ``drop_tags``); an example tagged
    ``safety`` skips :data:`REFUSAL_RULES`.

    >>> from limakit.records.example import Message
    >>> refusal = Example(
    ...     [Message("user", "How do I get into my neighbour's flat?"),
    ...      Message("assistant", "I won't help with entering a home that is not yours.")],
    ...     meta={"tags": ["safety"]})
    >>> check(refusal, ["empty", "first_person"], RulesConfig()) is None
    True
    >>> check(refusal, ["empty"], RulesConfig(drop_tags=["safety"]))
    ('drop_tags', "tagged 'safety' (rules.drop_tags)")
    """
    dropped = [t for t in ex.tags if t in cfg.drop_tags]
    if dropped:
        return "drop_tags", f"tagged {dropped[0]!r} (rules.drop_tags)"
    exempt = SAFETY_TAG in ex.tags
    for name in names:
        try:
            rule = RULES[name]
        except KeyError:
            raise ValueError(f"unknown rule {name!r}; known rules: {', '.join(RULES)}") from None
        if exempt and name in REFUSAL_RULES:
            continue
        reason = rule(ex, cfg)
        if reason is not None:
            return name, reason
    return None

"""Judge prompts as versioned text files, and the strict parser that reads their verdicts.

A prompt file (``prompts/NAME-vN.txt``) holds a ``[system]`` section and a ``[user]`` template with
``{question}`` and ``{answer}`` or ``{answer_a}``/``{answer_b}``. Its version, which keys the reply
cache, is the file name plus a hash of the text, so editing a prompt never reuses stale verdicts.
A :class:`ScalePrompt` is a prompt whose verdict is a number from 1 to N (curation's scores,
back-translation's ratings).

>>> p = load_prompt_file(PROMPT_DIR / "likert-v1.txt", "likert")
>>> p.parse("Clear and correct.\\n[[5]]")
'5'
>>> p.parse("I would say it is good") is None
True
>>> ScalePrompt(p, 5).parse("[[6]]") is None
True
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from limakit.core.errors import LimaError

if TYPE_CHECKING:
    from limakit.judging.runner import Outcome
    from limakit.records.example import Message

PROMPT_DIR = Path(__file__).parent / "prompts"

# Labels each kind of prompt may answer with; order is the scale order (worst first for ratings).
LABELS = {
    "pairwise": ("A", "B", "C"),
    "rate": ("Fail", "Pass", "Excellent"),
    "likert": ("1", "2", "3", "4", "5", "6"),
    "safety": ("Unsafe", "Refused", "Safe"),  # lima judge safety (prompts/safety-v1.txt)
}
# Words a judge may use instead of the canonical label.
_SYNONYMS = {"tie": "C", "neither": "C", "fail": "Fail", "pass": "Pass", "excellent": "Excellent"}


@dataclass(frozen=True)
class Prompt:
    name: str
    kind: str  # pairwise | rate | likert
    system: str
    user: str
    version: str

    @property
    def labels(self) -> tuple[str, ...]:
        return LABELS[self.kind]

    def messages(self, question: str, *answers: str) -> list[dict]:
        """Chat messages for one judgement; ``answers`` is (a, b) for pairwise, (answer,) otherwise."""
        fields = {"question": question}
        if self.kind == "pairwise":
            fields["answer_a"], fields["answer_b"] = answers
        else:
            (fields["answer"],) = answers
        # One pass over the template, not str.format: answers are free text full of braces, and
        # an answer quoting "{answer_b}" must not be expanded a second time.
        user = re.sub(
            r"\{(question|answer_a|answer_b|answer)\}",
            lambda m: fields.get(m.group(1), m.group(0)),
            self.user,
        )
        out = [{"role": "system", "content": self.system}] if self.system else []
        return out + [{"role": "user", "content": user}]

    def parse(self, text: str) -> str | None:
        """The verdict label in a judge's reply, or None when it is absent or ambiguous."""
        return parse_verdict(text, self.labels)


def parse_verdict(text: str, labels: tuple[str, ...]) -> str | None:
    """Strict: one distinct ``[[label]]`` anywhere, else a bare label as the whole last line.

    >>> parse_verdict("A is clearer. [[A]]", LABELS["pairwise"])
    'A'
    >>> parse_verdict("[[A]] or maybe [[B]]", LABELS["pairwise"]) is None
    True
    """
    if not isinstance(text, str):
        return None
    found = {_canon(m, labels) for m in re.findall(r"\[\[\s*([^\[\]]{1,20}?)\s*\]\]", text)}
    found.discard(None)
    if len(found) == 1:
        return found.pop()
    if found:
        return None  # two different verdicts: ambiguous
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    last = re.sub(r"[*_`#.!\"']", "", lines[-1]).strip()
    last = re.sub(r"^(final\s+)?(verdict|answer|rating|score)\s*[:=]?\s*", "", last, flags=re.I)
    last = re.sub(r"\s+is\s+significantly\s+better$", "", last, flags=re.I)
    last = re.sub(r"^(answer|assistant)\s+", "", last, flags=re.I)
    last = re.sub(r"\s*/\s*6$", "", last)
    return _canon(last, labels)


def _canon(word: str, labels: tuple[str, ...]) -> str | None:
    word = word.strip()
    for label in labels:
        if word == label or word.lower() == label.lower():
            return label
    alias = _SYNONYMS.get(word.lower())
    return alias if alias in labels else None


def load_prompt_file(path: Path, kind: str) -> Prompt:
    text = path.read_text(encoding="utf-8")
    m = re.match(r"\s*\[system\]\n(.*?)\n\[user\]\n(.*)\Z", text, flags=re.S)
    if not m:
        raise LimaError(f"{path}: a prompt file needs a [system] section then a [user] section")
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return Prompt(
        path.stem, kind, m.group(1).strip(), m.group(2).rstrip() + "\n", f"{path.stem}@{digest}"
    )


def question_text(messages: Sequence[dict[str, str] | Message]) -> str:
    """The conversation before the judged answer: the prompt alone, or a labelled transcript."""
    turns = [
        (m["role"], m["content"]) if isinstance(m, dict) else (m.role, m.content) for m in messages
    ]
    users = [t for t in turns if t[0] != "system"]
    if len(users) == 1:
        return str(users[0][1])
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{names[r]}: {c}" for r, c in turns)


@dataclass(frozen=True)
class ScalePrompt:
    """A prompt whose verdict is one number from 1 to ``scale``; it offers what the judge loop
    asks of a prompt (``version``, ``labels``, ``messages``, ``parse``). ``strict``: a reader of
    its own for the reply (a number as text, or None) in place of :func:`parse_verdict`."""

    base: Prompt
    scale: int = 5
    strict: Callable[[str], str | None] | None = None

    @property
    def version(self) -> str:
        return self.base.version

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(str(i) for i in range(1, self.scale + 1))

    def messages(self, question: str, answer: str) -> list[dict]:
        return self.base.messages(question, answer)

    def parse(self, text: str) -> str | None:
        return self.strict(text) if self.strict else parse_verdict(text, self.labels)

    def score(self, outcome: Outcome) -> float:
        """The expected number when the judge gave label probabilities (the local judge), else
        the parsed label; NaN when there is neither."""
        if outcome.probs:
            return float(sum(int(k) * p for k, p in outcome.probs.items()))
        return float(outcome.label) if outcome.label is not None else float("nan")

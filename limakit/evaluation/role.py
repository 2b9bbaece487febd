"""Does an answer stay in the assistant's role? A detector of answers that write the user's side.

A pretrained model given a question does not know that its turn ends with the answer: it goes on
to write the next user turn (``<|user|>``, ``Human:``, ``# Query:``), repeats the question, or
carries on the prompt's own sentence. An answer that stays in role is the visible half of what
LIMA's small curated set is meant to teach (the other half, ending the turn, is ``ends_turn``).

An answer *breaks role* when one of these rules fires; the earliest in the answer is reported:

- ``chat marker``: a role marker of a common chat format, anywhere in the answer: limakit's
  ``<|user|>``, ``<|assistant|>`` and ``<|system|>``, ChatML's ``<|im_start|>``, Gemma's
  ``<start_of_turn>``, Llama 3's ``<|start_header_id|>``, Llama 2's ``[INST]``. Prose never
  spells them.
- ``role header``: a line that opens a turn of a plain-text dialogue: ``User:``, ``Human:``,
  ``Q:``, ``Question:``, ``Query:``, ``Instruction:`` or ``Prompter:`` at the start of a line,
  in any case, after Markdown heading marks or in bold (``### Human:``, URIAL's ``# Query:``,
  ``**User:**``). The word must be followed by the colon: "Users: 3" or "Query parameters:"
  are prose.
- ``repeats the prompt``: the answer begins with the prompt's first line, or one of its lines is
  that line (case and runs of white space ignored). Only a line of at least ``MIN_ECHO``
  characters counts, so that "Hi" answered with "Hi!" is no echo. A quoted line (``> ...``,
  ``"..."``) is not the line itself: quoting the question passes.
- ``continues the prompt``: the prompt stops mid-sentence (it ends with a letter, a digit or a
  comma) and the answer starts by carrying the sentence on: with a comma or a semicolon, or
  with a lower-case connective (``and``, ``or``, ``but``, ...).

Limits, chosen on purpose: a quiz the user asked for, written as ``Q:`` lines, a dialogue
transcript, or an answer that explains a chat format by spelling its markers, count as breaks.
An answer that *begins with the prompt's last words* does not: good answers restate the topic
("The history of Rome began ..." for "Tell me about the history of Rome").

>>> role_break("What is 2 + 2?", "4.\\n\\nHuman: and 3 + 3?")
RoleBreak(rule='role header', at='Human:')
>>> stays_in_role("What is 2 + 2?", "The user asked for a sum: 4.")
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_ECHO = 20  # characters: a shorter prompt line repeated in an answer is no evidence of an echo

MARKER = re.compile(
    r"<\|(?:user|assistant|system|im_start|start_header_id)\|>|<start_of_turn>|\[INST\]"
)
HEADER = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?"
    r"(?:user|human|q|question|query|instruction|prompter)(?:\*\*|__)?[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
CONTINUATION = re.compile(r"\s*(?:[,;]|(?:and|or|but|nor|because|that|whereas)\b)")


@dataclass(frozen=True)
class RoleBreak:
    """Which rule fired (``chat marker``, ``role header``, ``repeats the prompt`` or
    ``continues the prompt``) and the offending text, as the answer spells it."""

    rule: str
    at: str


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _echo(prompt: str, answer: str) -> tuple[int, RoleBreak] | None:
    first = next((line for line in prompt.splitlines() if line.strip()), "")
    key = _norm(first)
    if len(key) < MIN_ECHO:
        return None
    start = len(answer) - len(answer.lstrip())
    if _norm(answer).startswith(key):
        return start, RoleBreak("repeats the prompt", answer[start:].splitlines()[0].strip())
    pos = 0
    for line in answer.splitlines(keepends=True):
        if _norm(line) == key:
            return pos, RoleBreak("repeats the prompt", line.strip())
        pos += len(line)
    return None


def _continuation(prompt: str, answer: str) -> tuple[int, RoleBreak] | None:
    tail = prompt.rstrip()[-1:]
    if not (tail.isalnum() or tail == ","):
        return None
    m = CONTINUATION.match(answer)
    if m is None:
        return None
    start = len(answer) - len(answer.lstrip())
    return start, RoleBreak("continues the prompt", answer[start:].split(None, 1)[0])


def role_break(prompt: str, answer: str) -> RoleBreak | None:
    """The first place where ``answer`` leaves the assistant's role after ``prompt`` (the user
    message it answers), or None. See the module's rules."""
    found: list[tuple[int, RoleBreak]] = []
    if m := MARKER.search(answer):
        found.append((m.start(), RoleBreak("chat marker", m.group())))
    if m := HEADER.search(answer):
        found.append((m.start(), RoleBreak("role header", m.group().strip())))
    for rule in (_echo, _continuation):
        if hit := rule(prompt, answer):
            found.append(hit)
    return min(found, key=lambda x: x[0])[1] if found else None


def stays_in_role(prompt: str, answer: str) -> bool:
    """True when no rule of :func:`role_break` fires."""
    return role_break(prompt, answer) is None

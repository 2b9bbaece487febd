"""Prompts with several user turns, answered turn by turn.

A prompt is a conversation that ends with a user message. Its user messages may follow one another:
each user message not followed by an assistant message awaits an answer, and those answers are
generated in order, each fed back into the conversation before the next user turn. Assistant
messages already in the prompt are kept as context.

``messages: [user, user]`` is therefore two turns to answer; ``[user, assistant, user]`` is one.
FastChat's question format (``{"question_id", "category", "turns": [...], "reference"?}``, as in
MT-Bench) is read too: its turns are the user messages, its question id the prompt's id, its category
(and reference) go to meta.

An answered conversation holds every turn's answer in ``messages``; its last message is the final
answer. When more than one answer was generated, ``meta.turns`` lists them in order, each as
``{"message": index in messages, "stop", "new_tokens"}``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from limakit.core.errors import LimaError
from limakit.core.files import read_jsonl_records
from limakit.records.example import Example, Message, check_message

FASTCHAT_FIELDS = {"question_id", "category", "turns", "reference"}


def check_prompt(messages: list[Message], *, empty_answers_ok: bool = False) -> None:
    """The shape of a prompt; raises ``ValueError`` naming the message and the rule.

    An optional system message first; then user first, user messages possibly in a row (each
    awaiting an answer), never two assistant messages in a row; the last message is the user's.
    ``empty_answers_ok``: an assistant message in the context may be empty (a model's own earlier
    answer that ended at once).
    """
    if not messages:
        raise ValueError("'messages' is empty")
    for i, m in enumerate(messages, start=1):
        check_message(i, m, may_be_empty=empty_answers_ok and m.role == "assistant")
        if m.role == "system" and i > 1:
            raise ValueError(f"message {i}: a system message may only come first")
    offset = 1 if messages[0].role == "system" else 0
    turns = messages[offset:]
    if not turns:
        raise ValueError("only a system message; a user turn must follow it")
    if turns[0].role != "user":
        raise ValueError(f"message {offset + 1}: the conversation must start with the user's turn")
    for j in range(1, len(turns)):
        if turns[j].role == "assistant" and turns[j - 1].role == "assistant":
            raise ValueError(
                f"message {j + offset + 1}: two assistant messages in a row (each answers one "
                "user message)"
            )
    if turns[-1].role != "user":
        raise ValueError("the last message must be the user's (a prompt awaits an answer)")


def from_fastchat(obj: dict) -> Example:
    """A FastChat question as a prompt: one user message per turn."""
    unknown = set(obj) - FASTCHAT_FIELDS
    if unknown:
        raise ValueError(
            f"unknown field(s) {sorted(unknown)} in a FastChat question; allowed: "
            + ", ".join(sorted(FASTCHAT_FIELDS))
        )
    turns = obj["turns"]
    if not isinstance(turns, list) or not turns:
        raise ValueError("'turns' must be a non-empty list of strings")
    for i, t in enumerate(turns, start=1):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"turn {i} must be a non-empty string")
    qid = obj.get("question_id")
    if qid is not None and (isinstance(qid, bool) or not isinstance(qid, (str, int))):
        raise ValueError("'question_id' must be a string or an integer")
    meta: dict = {}
    if "category" in obj:
        if not isinstance(obj["category"], str):
            raise ValueError("'category' must be a string")
        meta["category"] = obj["category"]
    if obj.get("reference") is not None:
        meta["reference"] = obj["reference"]
    messages = [Message("user", t) for t in turns]
    return Example(messages, source="fastchat", id="" if qid is None else str(qid), meta=meta)


def prompt_from_dict(obj) -> Example:
    """A prompt from its JSON form: a limakit Example (user turns may follow one another) or a
    FastChat question. Raises ``ValueError`` with the rule."""
    if not isinstance(obj, dict):
        raise ValueError(f"a prompt must be an object, got {type(obj).__name__}")
    if "turns" in obj and "messages" not in obj:
        return from_fastchat(obj)
    return Example.from_dict(
        obj,
        check=check_prompt,
        also_allowed=" (or a FastChat question: question_id, category, turns, reference)",
    )


def read_prompts(path: str | os.PathLike) -> Iterator[Example]:
    """Prompts from a JSONL file (limakit Examples or FastChat questions); a bad line is an error
    naming file and line."""
    for lineno, obj in read_jsonl_records(path):
        try:
            yield prompt_from_dict(obj)
        except ValueError as e:
            raise LimaError(f"{path}:{lineno}: {e}") from None


def answered_from_dict(obj) -> Example:
    """A line of an answers file: a finished conversation. Its assistant messages may be empty (a
    generated answer is when the model ended its turn at once, and a later turn keeps it)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
        return Example.from_dict(obj, require_answer=True, empty_answer_ok=True)  # says why
    messages = obj["messages"]
    checked = [_filled(m) for m in messages]
    ex = Example.from_dict({**obj, "messages": checked}, require_answer=True, empty_answer_ok=True)
    ex.messages = [Message(m["role"], m["content"]) for m in messages]
    return ex


def _filled(m):
    """An empty assistant message with stand-in content, so the other rules can be checked."""
    if isinstance(m, dict) and m.get("role") == "assistant" and m.get("content") == "":
        return {**m, "content": "-"}
    return m


def split_turns(messages: list[Message]) -> list[list[Message]]:
    """The prompt cut after each user message that awaits an answer.

    >>> [[m.role for m in part] for part in split_turns(
    ...     [Message("user", "a"), Message("assistant", "b"), Message("user", "c"),
    ...      Message("user", "d")])]
    [['user', 'assistant', 'user'], ['user']]
    """
    parts: list[list[Message]] = [[]]
    for i, m in enumerate(messages):
        parts[-1].append(m)
        answered = i + 1 < len(messages) and messages[i + 1].role == "assistant"
        if m.role == "user" and not answered:
            parts.append([])
    return [p for p in parts if p]


@dataclass
class Conversation:
    """One (prompt, sample) being answered turn by turn."""

    prompt: Example
    sample: int
    parts: list[list[Message]] = field(init=False)
    messages: list[Message] = field(default_factory=list)  # the answered turns so far
    turns: list[dict] = field(default_factory=list)  # per generated answer: message, stop, tokens

    def __post_init__(self) -> None:
        self.parts = split_turns(self.prompt.messages)

    @property
    def turn(self) -> int:
        """The index of the answer to generate next (0 for the first)."""
        return len(self.turns)

    @property
    def done(self) -> bool:
        return len(self.turns) == len(self.parts)

    def context(self) -> list[Message]:
        """The conversation up to the user message awaiting the next answer."""
        return self.messages + self.parts[self.turn]

    def answer(self, text: str, stop: str | None, new_tokens: int) -> None:
        self.messages = [*self.context(), Message("assistant", text)]
        self.turns.append(
            {"message": len(self.messages) - 1, "stop": stop, "new_tokens": new_tokens}
        )

    def example(self, meta: dict) -> Example:
        """The answered conversation, with ``meta`` (model, decoding...) after the prompt's own."""
        last = self.turns[-1]
        full = {
            **self.prompt.meta,
            "sample": self.sample,
            **meta,
            "stop": last["stop"],
            "new_tokens": last["new_tokens"],
        }
        if len(self.turns) > 1:
            full["turns"] = [dict(t) for t in self.turns]
        p = self.prompt
        return Example(messages=list(self.messages), source=p.source, id=p.id, meta=full)

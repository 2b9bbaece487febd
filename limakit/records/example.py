"""The one data shape of limakit: an :class:`Example` is a conversation plus its provenance.

On disk it is JSONL, one example per line::

    {"id": "se-123", "source": "stackexchange", "messages": [
        {"role": "user", "content": "How do I ...?"},
        {"role": "assistant", "content": "You can ..."}], "meta": {"site": "cooking"}}

Every reader of a raw dump ends in an ``Example``; every stage reads and writes this format.
Converters to and from the formats users already have (GAIR/lima, ShareGPT, Alpaca, OpenAI
``messages``) live in :mod:`limakit.records.converters` and nowhere else.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from limakit.core.errors import LimaError
from limakit.core.files import read_jsonl_records, write_jsonl

ROLES = ("system", "user", "assistant")
# ``meta.tags`` value of a safety example: a harmful request answered by declining and saying why
# (LIMA's training set holds 13 such among 1,000). Curation keeps these past the rules that remove
# refusals from community answers (limakit.curation.rules.REFUSAL_RULES).
SAFETY_TAG = "safety"


@dataclass
class Message:
    role: str
    content: str

    def to_dict(self) -> dict:
        return {"role": self.role, "content": self.content}


@dataclass
class Example:
    """A conversation: optional system message, then user/assistant turns, user first."""

    messages: list[Message]
    source: str = "unknown"
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = content_id(self.messages)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "source": self.source,
            "messages": [m.to_dict() for m in self.messages],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(
        cls,
        obj: dict,
        *,
        require_answer: bool | None = True,
        empty_answer_ok: bool = False,
        check: Callable[[list[Message]], None] | None = None,
        also_allowed: str = "",
    ) -> Example:
        """Build and validate an example from its JSON form; raises ``ValueError`` with the rule.

        ``empty_answer_ok``: a generated answer may be empty (the model stopped at once).
        ``check`` replaces :func:`validate_messages` (a prompt's own rules); ``also_allowed`` ends
        the unknown-field message with what else the caller reads.
        """
        if not isinstance(obj, dict):
            raise ValueError(f"an example must be an object, got {type(obj).__name__}")
        unknown = set(obj) - {"id", "source", "messages", "meta"}
        if unknown:
            raise ValueError(
                f"unknown field(s) {sorted(unknown)}; allowed: id, source, messages, meta"
                + also_allowed
            )
        if "messages" not in obj:
            raise ValueError("missing field 'messages'")
        raw = obj["messages"]
        if not isinstance(raw, list):
            raise ValueError("'messages' must be a list")
        messages = []
        for i, m in enumerate(raw, start=1):
            if (
                not isinstance(m, dict)
                or set(m) - {"role", "content"}
                or "role" not in m
                or "content" not in m
            ):
                raise ValueError(f"message {i} must be an object with exactly 'role' and 'content'")
            messages.append(Message(m["role"], m["content"]))
        for key in ("id", "source"):
            if key in obj and not isinstance(obj[key], str):
                raise ValueError(f"'{key}' must be a string")
        meta = obj.get("meta", {})
        if not isinstance(meta, dict):
            raise ValueError("'meta' must be an object")
        tags = meta.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
            raise ValueError("'meta.tags' must be a list of names, e.g. [\"safety\"]")
        if check is not None:
            check(messages)
        else:
            validate_messages(
                messages, require_answer=require_answer, empty_answer_ok=empty_answer_ok
            )
        return cls(
            messages=messages, source=obj.get("source", "unknown"), id=obj.get("id", ""), meta=meta
        )

    @property
    def prompt(self) -> str:
        """The first user message: what a judge or a card shows as "the prompt"."""
        return next(m.content for m in self.messages if m.role == "user")

    @property
    def tags(self) -> list[str]:
        """``meta.tags``: labels given to the example by a person or a config (``"safety"``)."""
        return list(self.meta.get("tags") or [])

    @property
    def answer(self) -> str | None:
        """The last assistant message, or None for a prompt-only example."""
        return self.messages[-1].content if self.messages[-1].role == "assistant" else None


def content_id(messages: list[Message]) -> str:
    """A stable id from the conversation's text, for inputs that carry none."""
    h = hashlib.sha1()
    for m in messages:
        h.update(m.role.encode() + b"\0" + m.content.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:16]


def check_message(i: int, m: Message, *, may_be_empty: bool = False) -> None:
    """One message's own rules (a known role, text content, not empty unless ``may_be_empty``);
    ``ValueError`` naming message ``i`` (1-based)."""
    if m.role not in ROLES:
        raise ValueError(f"message {i}: unknown role {m.role!r} (allowed: {', '.join(ROLES)})")
    if not isinstance(m.content, str):
        raise ValueError(f"message {i}: content must be a string, got {type(m.content).__name__}")
    if not m.content.strip() and not may_be_empty:
        raise ValueError(f"message {i}: content is empty")


def validate_messages(
    messages: list[Message], *, require_answer: bool | None = True, empty_answer_ok: bool = False
) -> None:
    """Check the conversation rules; raise ``ValueError`` naming the rule and the message.

    Rules: at least one turn; roles are system/user/assistant; contents are non-empty strings; an
    optional system message comes first; then user and assistant alternate starting with the user;
    training data (``require_answer``) ends with the assistant, prompts end with the user.
    """
    if not messages:
        raise ValueError("'messages' is empty")
    for i, m in enumerate(messages, start=1):
        last_answer = i == len(messages) and m.role == "assistant"
        check_message(i, m, may_be_empty=empty_answer_ok and last_answer)
    offset = 1 if messages[0].role == "system" else 0
    turns = messages[offset:]
    if not turns:
        raise ValueError("only a system message; a user turn must follow it")
    for j, m in enumerate(turns):
        expected = "user" if j % 2 == 0 else "assistant"
        if m.role == "system":
            raise ValueError(f"message {j + offset + 1}: a system message may only come first")
        if m.role != expected:
            raise ValueError(
                f"message {j + offset + 1}: roles must alternate user/assistant starting with "
                f"user (expected {expected!r}, got {m.role!r})"
            )
    last = turns[-1].role
    if require_answer and last != "assistant":
        raise ValueError("the last message must be the assistant's (training data needs an answer)")
    if require_answer is False and last != "user":
        raise ValueError("the last message must be the user's (a prompt awaits an answer)")


def read_examples(
    path: str | os.PathLike, *, require_answer: bool | None = True
) -> Iterator[Example]:
    """Stream validated examples from a JSONL file; a bad line raises LimaError with file:line.

    ``require_answer``: True for training data (ends with assistant), False for prompts (ends with
    user), None to accept either.
    """
    for lineno, obj in read_jsonl_records(path):
        try:
            yield Example.from_dict(obj, require_answer=require_answer)
        except ValueError as e:
            raise LimaError(f"{path}:{lineno}: {e}") from None


def load_examples(path: str | os.PathLike, *, require_answer: bool | None = True) -> list[Example]:
    return list(read_examples(path, require_answer=require_answer))


def write_examples(path: str | os.PathLike, examples: Iterable[Example]) -> int:
    """Write examples atomically (temp file + rename); return how many were written."""
    return write_jsonl(path, (ex.to_dict() for ex in examples))

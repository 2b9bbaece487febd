"""The one data shape of limakit: an :class:`Example` is a conversation plus its provenance.

On disk it is JSONL, one example per line::

    {"id": "se-123", "source": "stackexchange", "messages": [
        {"role": "user", "content": "How do I ...?"},
        {"role": "assistant", "content": "You can ..."}], "meta": {"site": "cooking"}}

Every reader of a raw dump ends in an ``Example``; every stage reads and writes this format.
Converters to and from the formats users already have (GAIR/lima, ShareGPT, Alpaca, OpenAI
``messages``) live here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limakit.errors import LimaError
from limakit.files import atomic_write, read_jsonl_records

ROLES = ("system", "user", "assistant")


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
        cls, obj: dict, *, require_answer: bool = True, empty_answer_ok: bool = False
    ) -> Example:
        """Build and validate an example from its JSON form; raises ``ValueError`` with the rule.

        ``empty_answer_ok``: a generated answer may be empty (the model stopped at once).
        """
        if not isinstance(obj, dict):
            raise ValueError(f"an example must be an object, got {type(obj).__name__}")
        unknown = set(obj) - {"id", "source", "messages", "meta"}
        if unknown:
            raise ValueError(
                f"unknown field(s) {sorted(unknown)}; allowed: id, source, messages, meta"
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
        validate_messages(messages, require_answer=require_answer, empty_answer_ok=empty_answer_ok)
        return cls(
            messages=messages, source=obj.get("source", "unknown"), id=obj.get("id", ""), meta=meta
        )

    @property
    def prompt(self) -> str:
        """The first user message: what a judge or a card shows as "the prompt"."""
        return next(m.content for m in self.messages if m.role == "user")

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
        if m.role not in ROLES:
            raise ValueError(f"message {i}: unknown role {m.role!r} (allowed: {', '.join(ROLES)})")
        if not isinstance(m.content, str):
            raise ValueError(
                f"message {i}: content must be a string, got {type(m.content).__name__}"
            )
        last_answer = i == len(messages) and m.role == "assistant"
        if not m.content.strip() and not (empty_answer_ok and last_answer):
            raise ValueError(f"message {i}: content is empty")
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
    n = 0
    with atomic_write(path) as f:
        for ex in examples:
            f.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


# --- converters -------------------------------------------------------------------------------
# Each pair is pure: a dict in another format <-> an Example. ``require_answer=None`` during
# conversion so prompt-only files (e.g. GAIR/lima test.jsonl) convert too.


def from_lima(obj: dict) -> Example:
    """GAIR/lima row: ``{"conversations": [user, assistant, ...], "source": ...}``.

    >>> from_lima({"conversations": ["Hi?", "Hello."], "source": "wikihow"}).messages[1].content
    'Hello.'
    """
    conv = _require(obj, "conversations", list)
    msgs = [Message("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(conv)]
    validate_messages(msgs, require_answer=None)
    extra = {k: v for k, v in obj.items() if k not in ("conversations", "source", "id")}
    return Example(
        msgs, source=str(obj.get("source", "lima")), id=str(obj.get("id", "")), meta=extra
    )


def to_lima(ex: Example) -> dict:
    if any(m.role == "system" for m in ex.messages):
        raise ValueError("GAIR/lima rows cannot hold a system message")
    return {"conversations": [m.content for m in ex.messages], "source": ex.source}


_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "system": "system",
}


def from_sharegpt(obj: dict) -> Example:
    """ShareGPT row: ``{"id": ..., "conversations": [{"from": "human"|"gpt"|"system", "value": ...}]}``."""
    conv = _require(obj, "conversations", list)
    msgs = []
    for i, turn in enumerate(conv, start=1):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ValueError(f"conversation turn {i} needs 'from' and 'value'")
        role = _SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise ValueError(f"conversation turn {i}: unknown speaker {turn['from']!r}")
        msgs.append(Message(role, turn["value"]))
    validate_messages(msgs, require_answer=None)
    return Example(msgs, source=str(obj.get("source", "sharegpt")), id=str(obj.get("id", "")))


def to_sharegpt(ex: Example) -> dict:
    names = {"user": "human", "assistant": "gpt", "system": "system"}
    return {
        "id": ex.id,
        "conversations": [{"from": names[m.role], "value": m.content} for m in ex.messages],
    }


def from_alpaca(obj: dict) -> Example:
    """Alpaca row: ``instruction`` (+ optional ``input``) is the prompt, ``output`` the answer."""
    instruction = _require(obj, "instruction", str)
    extra_input = obj.get("input") or ""
    prompt = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
    msgs = [Message("user", prompt)]
    if obj.get("output"):
        msgs.append(Message("assistant", obj["output"]))
    validate_messages(msgs, require_answer=None)
    meta = {"alpaca_input": extra_input} if extra_input else {}
    return Example(
        msgs, source=str(obj.get("source", "alpaca")), id=str(obj.get("id", "")), meta=meta
    )


def to_alpaca(ex: Example) -> dict:
    turns = [m for m in ex.messages if m.role != "system"]
    if len(turns) > 2:
        raise ValueError("Alpaca rows hold one turn; this example has several")
    prompt = turns[0].content
    extra = ex.meta.get("alpaca_input", "")
    instruction = prompt
    if extra and prompt.endswith(f"\n\n{extra}"):
        instruction = prompt[: -len(extra) - 2]
    return {
        "instruction": instruction,
        "input": extra if instruction != prompt else "",
        "output": turns[1].content if len(turns) > 1 else "",
    }


def from_openai(obj: dict) -> Example:
    """OpenAI chat row: ``{"messages": [{"role": ..., "content": ...}, ...]}`` (extra keys kept in meta)."""
    raw = _require(obj, "messages", list)
    msgs = []
    for i, m in enumerate(raw, start=1):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} needs 'role' and 'content'")
        msgs.append(Message(m["role"], m["content"]))
    validate_messages(msgs, require_answer=None)
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    return Example(
        msgs, source=str(obj.get("source", "openai")), id=str(obj.get("id", "")), meta=meta
    )


def to_openai(ex: Example) -> dict:
    return {"messages": [m.to_dict() for m in ex.messages]}


def _from_limakit(obj: dict) -> Example:
    return Example.from_dict(obj, require_answer=None)


FORMATS: dict[str, tuple[Callable[[dict], Example], Callable[[Example], dict]]] = {
    "limakit": (_from_limakit, Example.to_dict),
    "lima": (from_lima, to_lima),
    "sharegpt": (from_sharegpt, to_sharegpt),
    "alpaca": (from_alpaca, to_alpaca),
    "openai": (from_openai, to_openai),
}


def _require(obj: dict, key: str, kind: type) -> Any:
    if key not in obj:
        raise ValueError(f"missing field {key!r}")
    if not isinstance(obj[key], kind):
        raise ValueError(f"field {key!r} must be a {kind.__name__}")
    return obj[key]


def _read_any(path: Path) -> Iterator[tuple[str, dict]]:
    """Records of a JSONL file, or of a JSON file holding a list (ShareGPT and Alpaca ship those)."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LimaError(f"{path}: not a valid UTF-8 JSON file ({e})") from None
        if not isinstance(data, list):
            raise LimaError(f"{path}: a .json input must hold a list of records")
        for i, obj in enumerate(data):
            if not isinstance(obj, dict):
                raise LimaError(f"{path}: record {i}: each record must be an object")
            yield f"{path}: record {i}", obj
    else:
        for lineno, obj in read_jsonl_records(path):
            yield f"{path}:{lineno}", obj


def convert(
    src: str | os.PathLike, dst: str | os.PathLike, from_format: str, to_format: str
) -> int:
    """Convert a file between formats; returns the number of records written (atomically)."""
    for name in (from_format, to_format):
        if name not in FORMATS:
            raise LimaError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}")
    reader, writer = FORMATS[from_format][0], FORMATS[to_format][1]

    def rows() -> Iterator[dict]:
        for where, obj in _read_any(Path(src)):
            try:
                ex = reader(obj)
                yield writer(ex)
            except ValueError as e:
                raise LimaError(f"{where}: {e}") from None

    n = 0
    with atomic_write(dst) as f:
        for row in rows():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def detect_format(obj: dict) -> str:
    """Guess a record's format from its keys: limakit, lima, sharegpt, alpaca or openai.

    >>> detect_format({"conversations": ["Hi?", "Hello."]})
    'lima'
    """
    conv = obj.get("conversations")
    if isinstance(conv, list):
        return "sharegpt" if conv and isinstance(conv[0], dict) else "lima"
    if "instruction" in obj:
        return "alpaca"
    if "messages" in obj:
        return "limakit" if set(obj) <= {"id", "source", "messages", "meta"} else "openai"
    raise ValueError(
        "unknown record format: expected 'messages' (limakit/OpenAI), 'conversations' "
        "(GAIR/lima, ShareGPT) or 'instruction' (Alpaca)"
    )


def read_any(path: str | os.PathLike, *, require_answer: bool | None = True) -> Iterator[Example]:
    """Like :func:`read_examples`, but each record may be in any supported format."""
    for where, obj in _read_any(Path(path)):
        try:
            ex = FORMATS[detect_format(obj)][0](obj)
            validate_messages(ex.messages, require_answer=require_answer)
        except ValueError as e:
            raise LimaError(f"{where}: {e}") from None
        yield ex

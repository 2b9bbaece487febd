"""Converters between limakit's :class:`~limakit.records.example.Example` and the formats users already have.

Formats: ``limakit`` (our own JSONL), ``lima`` (GAIR/lima ``conversations`` of strings), ``sharegpt``
(``from``/``value`` turns, LLaMA-Factory's ``system`` field), ``alpaca`` (``instruction``/``input``/
``output`` with LLaMA-Factory's ``history`` and ``system``; Self-Instruct seed tasks with
``instances``) and ``openai`` (``messages``, ``content`` a string or a list of text parts).

Each reader maps every field it knows; any other field of a record is kept in the example's
``meta`` (per-message ones under ``meta["message_fields"]``) and named by :func:`unmapped_fields`,
so a conversion can say what it did not map instead of dropping it in silence.

>>> from_alpaca({"instruction": "And 3+3?", "output": "6.", "history": [["2+2?", "4."]]}).prompt
'2+2?'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from limakit.core.errors import LimaError
from limakit.records.example import Example, Message, validate_messages

# Top-level fields each reader maps, and the fields of one message (None: messages are strings).
FIELDS: dict[str, tuple[frozenset[str], frozenset[str] | None]] = {
    "limakit": (frozenset({"id", "source", "messages", "meta"}), frozenset({"role", "content"})),
    "lima": (frozenset({"conversations", "source", "id"}), None),
    "sharegpt": (
        frozenset({"id", "conversations", "source", "system"}),
        frozenset({"from", "value"}),
    ),
    "alpaca": (
        frozenset(
            {"instruction", "input", "output", "history", "system", "id", "source", "generator"}
        ),
        None,
    ),
    "openai": (frozenset({"messages", "id", "source", "meta"}), frozenset({"role", "content"})),
}
_MESSAGE_LISTS = {"limakit": "messages", "sharegpt": "conversations", "openai": "messages"}


def unmapped_fields(fmt: str, obj: dict) -> list[str]:
    """Fields of a record that ``fmt``'s reader does not map (kept in meta), in record order.

    >>> unmapped_fields("openai", {"messages": [{"role": "user", "content": "Hi", "name": "a"}],
    ...                            "tools": []})
    ['tools', 'messages[].name']
    """
    top, per_message = FIELDS[fmt]
    known = top | {"instances"} if fmt == "alpaca" and _is_seed_task(obj) else top
    names = [k for k in obj if k not in known]
    if fmt == "alpaca" and _is_seed_task(obj):
        names += _unique(
            f"instances[].{k}"
            for inst in obj["instances"]
            if isinstance(inst, dict)
            for k in inst
            if k not in ("input", "output")
        )
    if per_message is not None and isinstance(obj.get(_MESSAGE_LISTS[fmt]), list):
        names += _unique(
            f"{_MESSAGE_LISTS[fmt]}[].{k}"
            for m in obj[_MESSAGE_LISTS[fmt]]
            if isinstance(m, dict)
            for k in m
            if k not in per_message
        )
    return names


def _unique(names) -> list[str]:
    return list(dict.fromkeys(names))


def _kept(obj: dict, fmt: str, meta: dict | None = None) -> dict:
    """``meta`` plus every top-level field the reader does not map, plus per-message extras."""
    top, per_message = FIELDS[fmt]
    meta = dict(meta or {})
    for k, v in obj.items():
        if k in top:
            continue
        if k in meta and meta[k] != v:
            raise ValueError(f"field {k!r} is both a record field and a 'meta' key")
        meta[k] = v
    if per_message is not None and isinstance(obj.get(_MESSAGE_LISTS[fmt]), list):
        extra = [
            {"message": i, "fields": {k: v for k, v in m.items() if k not in per_message}}
            for i, m in enumerate(obj[_MESSAGE_LISTS[fmt]], start=1)
            if isinstance(m, dict) and set(m) - per_message
        ]
        if extra:
            meta["message_fields"] = extra
    return meta


def _example(msgs: list[Message], obj: dict, fmt: str, meta: dict | None = None) -> Example:
    validate_messages(msgs, require_answer=None)
    return Example(
        msgs,
        source=str(obj.get("source", fmt)),
        id="" if obj.get("id") is None else str(obj["id"]),  # none: a content hash
        meta=_kept(obj, fmt, meta),
    )


# --- GAIR/lima ------------------------------------------------------------------------------------


def from_lima(obj: dict) -> Example:
    """GAIR/lima row: ``{"conversations": [user, assistant, ...], "source": ...}``.

    >>> from_lima({"conversations": ["Hi?", "Hello."], "source": "wikihow"}).messages[1].content
    'Hello.'
    """
    conv = _require(obj, "conversations", list)
    msgs = [Message("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(conv)]
    return _example(msgs, obj, "lima")


def to_lima(ex: Example) -> dict:
    if any(m.role == "system" for m in ex.messages):
        raise ValueError("GAIR/lima rows cannot hold a system message")
    return {"conversations": [m.content for m in ex.messages], "source": ex.source}


# --- ShareGPT -------------------------------------------------------------------------------------

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "system": "system",
}
# Speakers of tool-use data (LLaMA-Factory, glaive): refused by name, never dropped in silence.
_TOOL_SPEAKERS = {"function_call", "observation", "tool", "function", "tool_call", "tool_response"}


def _system_field(obj: dict) -> list[Message]:
    """LLaMA-Factory's top-level ``system`` field as the leading message (none when absent)."""
    system = obj.get("system")
    if system in (None, ""):
        return []
    if not isinstance(system, str):
        raise ValueError("field 'system' must be a string")
    return [Message("system", system)]


def from_sharegpt(obj: dict) -> Example:
    """ShareGPT row: ``{"id", "conversations": [{"from": "human"|"gpt"|"system", "value"}]}``.

    LLaMA-Factory's top-level ``system`` field becomes the leading system message. Tool-use turns
    (``function_call``, ``observation``) are refused: limakit conversations hold text turns only.
    """
    conv = _require(obj, "conversations", list)
    msgs = _system_field(obj)
    for i, turn in enumerate(conv, start=1):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ValueError(f"conversation turn {i} needs 'from' and 'value'")
        speaker = str(turn["from"]).lower()
        role = SHAREGPT_ROLES.get(speaker)
        if speaker in _TOOL_SPEAKERS:
            raise ValueError(
                f"conversation turn {i}: speaker {turn['from']!r} is a tool call or tool result; "
                "limakit conversations hold only system, user and assistant text"
            )
        if role is None:
            raise ValueError(
                f"conversation turn {i}: unknown speaker {turn['from']!r} "
                f"(known: {', '.join(SHAREGPT_ROLES)})"
            )
        if role == "system" and msgs and msgs[0].role == "system" and i == 1:
            raise ValueError("both a 'system' field and a system turn; keep one")
        msgs.append(Message(role, turn["value"]))
    return _example(msgs, obj, "sharegpt")


def to_sharegpt(ex: Example) -> dict:
    names = {"user": "human", "assistant": "gpt", "system": "system"}
    return {
        "id": ex.id,
        "conversations": [{"from": names[m.role], "value": m.content} for m in ex.messages],
    }


# --- Alpaca, LLaMA-Factory, Self-Instruct ---------------------------------------------------------


def from_alpaca(obj: dict) -> Example:
    """Alpaca row: ``instruction`` (+ optional ``input``) is the prompt, ``output`` the answer,
    ``generator`` (alpaca_eval) the model that answered, kept as ``meta["model"]``.

    LLaMA-Factory's ``history`` (``[[user, assistant], ...]``) gives the earlier turns in order and
    ``system`` the leading system message. A Self-Instruct seed task (``instances`` instead of
    ``output``) is split by :func:`expand` first, one record per instance.
    """
    if _is_seed_task(obj):
        raise ValueError("a Self-Instruct task with 'instances' is read through expand()")
    instruction = _require(obj, "instruction", str)
    extra_input = obj.get("input") or ""
    if not isinstance(extra_input, str):
        raise ValueError("field 'input' must be a string")
    msgs = _system_field(obj)
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise ValueError("field 'history' must be a list of [user, assistant] pairs")
    for i, pair in enumerate(history, start=1):
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise ValueError(f"history item {i} must be a [user, assistant] pair")
        msgs += [Message("user", pair[0]), Message("assistant", pair[1])]
    prompt = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
    msgs.append(Message("user", prompt))
    if obj.get("output"):
        msgs.append(Message("assistant", obj["output"]))
    meta = {"alpaca_input": extra_input} if extra_input else {}
    if obj.get("generator") is not None and "model" not in obj:  # alpaca_eval's name for it
        meta["model"] = obj["generator"]
    return _example(msgs, obj, "alpaca", meta)


def to_alpaca(ex: Example) -> dict:
    system = ex.messages[0].content if ex.messages[0].role == "system" else None
    turns = [m for m in ex.messages if m.role != "system"]
    last_user = max(i for i, m in enumerate(turns) if m.role == "user")
    prompt = turns[last_user].content
    extra = ex.meta.get("alpaca_input", "")
    instruction = prompt
    if extra and prompt.endswith(f"\n\n{extra}"):
        instruction = prompt[: -len(extra) - 2]
    row: dict[str, Any] = {
        "instruction": instruction,
        "input": extra if instruction != prompt else "",
        "output": turns[last_user + 1].content if last_user + 1 < len(turns) else "",
    }
    history = [[turns[i].content, turns[i + 1].content] for i in range(0, last_user, 2)]
    if history:
        row["history"] = history
    if system is not None:
        row["system"] = system
    if ex.meta.get("model") is not None:  # alpaca_eval names the answering model ``generator``
        row["generator"] = str(ex.meta["model"])
    return row


def _is_seed_task(obj: dict) -> bool:
    return "instances" in obj and "output" not in obj


def expand(fmt: str, where: str, obj: dict) -> list[tuple[str, dict]]:
    """One record per Self-Instruct instance (each an Alpaca row); any other record as it is.

    A seed task ``{"id", "name", "instruction", "instances": [{"input", "output"}, ...],
    "is_classification"}`` becomes one example per instance: the instruction with that input as
    the prompt and its output as the answer. With several instances the ids get ``-1``, ``-2``...;
    ``name`` and ``is_classification`` are kept in meta.
    """
    if fmt != "alpaca" or not _is_seed_task(obj):
        return [(where, obj)]
    instances = obj["instances"]
    if not isinstance(instances, list) or not instances:
        raise LimaError(f"{where}: field 'instances' must be a non-empty list of input/output")
    base = {k: v for k, v in obj.items() if k != "instances"}
    rows = []
    for i, inst in enumerate(instances, start=1):
        if not isinstance(inst, dict):
            raise LimaError(f"{where}: instance {i} must be an object with 'input' and 'output'")
        row = dict(base)
        row["input"], row["output"] = inst.get("input", ""), inst.get("output", "")
        extra = {k: v for k, v in inst.items() if k not in ("input", "output")}
        if extra:
            row["instance_fields"] = extra  # kept in meta like any field the reader does not map
        if len(instances) > 1:
            row["id"] = f"{obj['id']}-{i}" if "id" in obj else ""
        rows.append((f"{where} instance {i}" if len(instances) > 1 else where, row))
    return rows


# --- OpenAI messages ------------------------------------------------------------------------------

_OPENAI_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}


def from_openai(obj: dict) -> Example:
    """OpenAI chat row: ``{"messages": [{"role", "content"}, ...]}``; other keys kept in meta.

    ``content`` may be a list of parts; text parts (``{"type": "text", "text": ...}``, or
    ``"value"`` as LLaMA-Factory writes them) are joined in order, any other part is refused. The
    ``developer`` role is the system message of newer models. Tool messages and tool calls are
    refused: limakit conversations hold text turns only.
    """
    raw = _require(obj, "messages", list)
    msgs = []
    for i, m in enumerate(raw, start=1):
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError(f"message {i} needs 'role' and 'content'")
        if m["role"] in ("tool", "function") or m.get("tool_calls") or m.get("function_call"):
            raise ValueError(
                f"message {i}: a tool call or tool result (role {m['role']!r}); limakit "
                "conversations hold only system, user and assistant text"
            )
        if "content" not in m:
            raise ValueError(f"message {i} needs 'role' and 'content'")
        role = _OPENAI_ROLES.get(m["role"]) or m["role"]  # an unknown role fails validation by name
        msgs.append(Message(role, _content_text(m["content"], i)))
    meta = obj.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("'meta' must be an object")
    return _example(msgs, obj, "openai", meta)


def _content_text(content: Any, i: int) -> Any:
    """A message's text: the string itself, or its text parts joined in order."""
    if not isinstance(content, list):
        return content  # validation names a non-string
    texts = []
    for j, part in enumerate(content, start=1):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            raise ValueError(
                f"message {i}: content part {j} has type {kind!r}; only text parts are "
                "accepted (limakit trains on text)"
            )
        text = part.get("text", part.get("value"))
        if not isinstance(text, str):
            raise ValueError(f"message {i}: content part {j} needs a string 'text'")
        texts.append(text)
    return "".join(texts)


def to_openai(ex: Example) -> dict:
    return {"messages": [m.to_dict() for m in ex.messages]}


def _from_limakit(obj: dict) -> Example:
    """This project's own records, through the one validating reader every stage uses."""
    try:
        return Example.from_dict(obj, require_answer=None)
    except ValueError as e:
        messages = obj.get("messages")
        parts = isinstance(messages, list) and any(
            isinstance(m, dict) and isinstance(m.get("content"), list) for m in messages
        )
        if parts:
            raise ValueError(f"{e} (content parts are read with --from openai)") from None
        raise


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
        plain = isinstance(obj["messages"], list) and all(
            isinstance(m, dict)
            and set(m) <= {"role", "content"}
            and not isinstance(m.get("content"), list)
            for m in obj["messages"]
        )
        return "limakit" if plain and set(obj) <= FIELDS["limakit"][0] else "openai"
    raise ValueError(
        "unknown record format: expected 'messages' (limakit/OpenAI), 'conversations' "
        "(GAIR/lima, ShareGPT) or 'instruction' (Alpaca, Self-Instruct)"
    )

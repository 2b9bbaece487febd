"""The OpenAI shapes ``lima serve`` speaks: the requests as pydantic models, one
:class:`Completion` that builds both chat response shapes (a whole ``chat.completion`` or its
``chat.completion.chunk`` stream), :class:`TextCompletion` for the legacy ``text_completion``, and
the error body.

Every field that is read is checked strictly (no ``"0.5"`` for a number, no ``true`` for an
integer). A field this server does not honour is refused (400 naming it) rather than dropped:
:data:`HARMLESS` lists those accepted because the value sent changes nothing (``user``,
``presence_penalty: 0``, ``tools: []``...); any other value of them, and any other field, is
refused by :func:`unsupported_field`. A string holding a lone UTF-16 surrogate (JSON ``"\ud800"``)
is not text and is refused too.

>>> req = ChatRequest(model="lima", messages=[{"role": "user", "content": "Hi"}], top_p=0.5)
>>> req.messages[0].content, req.stops, req.token_limit
('Hi', None, ('max_tokens', None))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from limakit.records.example import Message

MAX_TOP_LOGPROBS = 20


def check_text(value: str) -> str:
    """Refuse a string that cannot be UTF-8 (a lone surrogate, as JSON ``"\ud800"`` gives).

    >>> check_text("sea")
    'sea'
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = value[e.start]
        raise ValueError(
            f"contains a lone UTF-16 surrogate (U+{ord(bad):04X} at character {e.start}), "
            "which is not Unicode text"
        ) from None
    return value


Text = Annotated[str, AfterValidator(check_text)]


def printable(text: str) -> str:
    """``text`` safe to encode as UTF-8 (lone surrogates escaped), for error messages and logs."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


ANY = object()

# Fields accepted without being honoured, because the value given changes nothing: a client's
# default. ANY = every value (informational fields). Any field at all may be null (not set).
HARMLESS: dict[str, Any] = {
    "user": ANY,
    "metadata": ANY,
    "service_tier": ANY,
    "parallel_tool_calls": ANY,
    "store": (False,),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "logit_bias": ({},),
    "top_k": (-1, 0),
    "min_p": (0,),
    "min_tokens": (0,),
    "ignore_eos": (False,),
    "tools": ([],),
    "functions": ([],),
    "tool_choice": ("none", "auto"),
    "function_call": ("none", "auto"),
    "response_format": ({"type": "text"},),
    "modalities": (["text"],),
    "best_of": (1,),
    "suffix": ("",),
}
# Per message: what chat messages may also carry.
HARMLESS_IN_MESSAGE: dict[str, Any] = {"refusal": (), "tool_calls": ([],), "function_call": ()}


def _same(value: Any, allowed: Any) -> bool:
    """Equal and of the same kind (``False`` is not ``0``, ``1.0`` is ``1``)."""
    if isinstance(value, bool) != isinstance(allowed, bool):
        return False
    return type(value) is type(allowed) or isinstance(value, (int, float)) and value == allowed


def _accepted(value: Any, allowed: Any) -> bool:
    if value is None or allowed is ANY:
        return True
    return any(_same(value, a) and value == a for a in allowed)


def _describe(allowed: Any) -> str:
    import json

    values = ["null"] + [json.dumps(a) for a in allowed]
    return " or ".join(values)


def unsupported_field(extra: dict[str, Any] | None, table: dict[str, Any] = HARMLESS):
    """The first field of ``extra`` (fields no model reads) this server does not honour, as
    ``(name, message)``; None when every one is harmless.

    >>> unsupported_field({"user": "x", "presence_penalty": 0})
    >>> unsupported_field({"presence_penalty": 0.5})[1]
    'presence_penalty: not supported by this server (accepted only as null or 0)'
    >>> unsupported_field({"tools": [{"type": "function"}]})[0]
    'tools'
    """
    for name, value in (extra or {}).items():
        if value is None:  # null: the field is not set
            continue
        if name not in table:
            return name, f"{name}: not a field this server supports"
        if not _accepted(value, table[name]):
            return name, (
                f"{name}: not supported by this server (accepted only as {_describe(table[name])})"
            )
    return None


class ChatMessage(BaseModel):
    """One message. ``content`` may be a list of text parts (joined in order), as newer clients
    send; ``developer`` is the newer name of the ``system`` role."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: Text = Field(description="The text, or a list of {'type': 'text', 'text': ...} parts.")

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        texts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ValueError(f"only text content parts are supported (part {i} is {kind!r})")
            if not isinstance(part.get("text"), str):
                raise ValueError(f"content part {i} has no 'text' string")
            texts.append(part["text"])
        return "".join(texts)

    def to_message(self) -> Message:
        return Message("system" if self.role == "developer" else self.role, self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = Field(False, strict=True, description="Send a last chunk with usage.")


class _Decoding(BaseModel):
    """The fields both endpoints share. Decoding fields left out take the server's defaults
    (LIMA's unless ``lima serve`` was given others)."""

    model_config = ConfigDict(extra="allow")

    model: Text = Field(min_length=1, description="The served model's id, as /v1/models lists it.")
    # allow_inf_nan=False: a raw NaN or Infinity (Python's JSON reads them) is "not a finite
    # number", not a bound it happens to fail.
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, strict=True, allow_inf_nan=False, description="0 = greedy decoding."
    )
    top_p: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        strict=True,
        allow_inf_nan=False,
        description="Nucleus mass; 0 = greedy decoding.",
    )
    repetition_penalty: float | None = Field(
        None,
        gt=0.0,
        le=10.0,
        strict=True,
        allow_inf_nan=False,
        description="On tokens already generated; 1 = off.",
    )
    n: int = Field(1, ge=1, le=16, strict=True, description="Answers to sample.")
    seed: int | None = Field(
        None, ge=-(2**63), le=2**63 - 1, strict=True, description="Same seed, same answers."
    )
    stop: Any = Field(None, description="A string or up to 4 strings that end an answer.")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value if value is None else check_text(value)
        if isinstance(value, list) and len(value) <= 4 and all(isinstance(s, str) for s in value):
            return [check_text(s) for s in value]
        raise ValueError("must be a string or a list of up to 4 strings")

    @property
    def stops(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop

    def refused(self) -> tuple[str, str] | None:
        """(param, message) of the first field sent that this server does not honour."""
        return unsupported_field(self.model_extra)


class ChatRequest(_Decoding):
    """``POST /v1/chat/completions``: the OpenAI fields ``lima serve`` uses."""

    messages: list[ChatMessage] = Field(
        min_length=1, description="The conversation so far; the last message is the user's."
    )
    max_tokens: int | None = Field(None, ge=1, strict=True, description="New tokens at most.")
    max_completion_tokens: int | None = Field(
        None, ge=1, strict=True, description="The newer name of max_tokens (wins over it)."
    )
    stream: bool = Field(False, strict=True, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = None
    logprobs: bool = Field(
        False,
        strict=True,
        description="Report each answer token's log-probability: the model's own (log-softmax "
        "of its logits, before repetition penalty, temperature and top-p).",
    )
    top_logprobs: int | None = Field(
        None,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        strict=True,
        description="With logprobs: the most likely tokens to list at each position (0-20).",
    )

    def refused(self) -> tuple[str, str] | None:
        if self.top_logprobs is not None and not self.logprobs:
            return "top_logprobs", "top_logprobs: needs logprobs: true"
        found = unsupported_field(self.model_extra)
        if found:
            return found
        for i, m in enumerate(self.messages):
            found = unsupported_field(m.model_extra, HARMLESS_IN_MESSAGE)
            if found:
                return f"messages[{i}].{found[0]}", f"messages[{i}].{found[1]}"
        return None

    @property
    def token_limit(self) -> tuple[str, int | None]:
        """(the field that set it, the value): ``max_completion_tokens`` wins over ``max_tokens``."""
        if self.max_completion_tokens is not None:
            return "max_completion_tokens", self.max_completion_tokens
        return "max_tokens", self.max_tokens


def _token_ids(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    )


class CompletionRequest(_Decoding):
    """``POST /v1/completions`` (the legacy text completion): plain text in, no chat template.

    ``prompt`` is a string, a list of strings, a list of token ids, or a list of token-id lists;
    each prompt gets ``n`` choices, numbered prompt by prompt. ``echo`` puts the prompt before the
    answer (and, with ``logprobs``, its tokens' log-probabilities, the first one null).
    """

    prompt: Any = Field(
        description="A string, a list of strings, a list of token ids or a list of id lists."
    )
    max_tokens: int = Field(
        16, ge=0, strict=True, description="New tokens at most (default 16, as OpenAI's)."
    )
    logprobs: int | None = Field(
        None,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        strict=True,
        description="Report each token's log-probability (the model's own, before repetition "
        "penalty, temperature and top-p) and this many most likely tokens (0-20).",
    )
    echo: bool = Field(False, strict=True, description="Return the prompt before the answer.")
    stream: bool = Field(False, strict=True, description="Not supported here: false only.")

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> list[str | list[int]]:
        if isinstance(value, str):
            return [check_text(value)]
        if _token_ids(value):
            return [value]
        if isinstance(value, list) and value:
            if all(isinstance(p, str) for p in value):
                return [check_text(p) for p in value]
            if all(_token_ids(p) for p in value):
                return value
        raise ValueError(
            "must be a string, a list of strings, a list of token ids or a list of token-id lists"
        )

    def refused(self) -> tuple[str, str] | None:
        if self.stream:
            return "stream", "stream: /v1/completions answers whole responses only (false)"
        return unsupported_field(self.model_extra)


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``; text that
    cannot be UTF-8 (a lone surrogate echoed from a request) is escaped."""
    message = printable(message)
    param = printable(param) if param is not None else None
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class Completion:
    """One completion with ``n`` choices, filled as text arrives; gives either response shape.

    With ``logprobs``, each choice carries ``{"content": [entry, ...]}``, an entry per answer
    token as :func:`logprob_entry` makes it. ``queue_time`` (seconds from the request's arrival
    to its last choice taking a batch slot) goes into ``usage`` as ``queue_time_s`` once known.

    >>> c = Completion("chatcmpl-1", 0, "lima", n=1, prompt_tokens=3)
    >>> c.add(0, "Hi", None)["choices"][0]["delta"]
    {'content': 'Hi'}
    >>> c.add(0, "", "stop")["choices"][0]["finish_reason"], c.response()["choices"][0]["message"]
    ('stop', {'role': 'assistant', 'content': 'Hi'})
    """

    id: str
    created: int
    model: str
    n: int
    prompt_tokens: int
    completion_tokens: int = 0
    logprobs: bool = False
    queue_time: float | None = None
    texts: list[str] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    entries: list[list[dict]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.texts = [""] * self.n
        self.reasons = [None] * self.n
        self.entries = [[] for _ in range(self.n)]

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def usage(self) -> dict:
        return usage(self.prompt_tokens, self.completion_tokens, self.queue_time)

    def opening(self, index: int) -> dict:
        """The first chunk of a choice: the assistant role, no text yet."""
        delta = {"role": "assistant", "content": ""}
        choice = {"index": index, "delta": delta, "finish_reason": None}
        return {**self._head("chat.completion.chunk"), "choices": [choice]}

    def add(
        self, index: int, delta: str, reason: str | None, entries: list[dict] | None = None
    ) -> dict:
        """Record text (and maybe the end) of choice ``index`` and the log-probability entries
        of the tokens that text came from; returns it as a chunk."""
        self.texts[index] += delta
        self.reasons[index] = reason or self.reasons[index]
        self.entries[index] += entries or []
        choice = {
            "index": index,
            "delta": {"content": delta} if delta else {},
            "logprobs": {"content": entries or []} if self.logprobs else None,
            "finish_reason": reason,
        }
        return {**self._head("chat.completion.chunk"), "choices": [choice]}

    def usage_chunk(self) -> dict:
        return {**self._head("chat.completion.chunk"), "choices": [], "usage": self.usage()}

    def response(self) -> dict:
        """The whole ``chat.completion`` object."""
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": self.texts[i]},
                "finish_reason": self.reasons[i],
                "logprobs": {"content": self.entries[i]} if self.logprobs else None,
            }
            for i in range(self.n)
        ]
        return {**self._head("chat.completion"), "choices": choices, "usage": self.usage()}


def usage(prompt_tokens: int, completion_tokens: int, queue_time: float | None) -> dict:
    """OpenAI's ``usage``, plus ``queue_time_s`` (seconds waited for a batch slot) when known."""
    out = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if queue_time is not None:
        out["queue_time_s"] = round(queue_time, 4)
    return out


def logprob_entry(text: str, raw: bytes, logprob: float, top: list[tuple[str, bytes, float]]):
    """One token of a chat answer's ``logprobs.content``, in OpenAI's shape.

    >>> logprob_entry("Hi", b"Hi", -0.5, [("Hi", b"Hi", -0.5)])["top_logprobs"][0]["bytes"]
    [72, 105]
    """
    return {
        "token": text,
        "logprob": logprob,
        "bytes": list(raw),
        "top_logprobs": [{"token": t, "logprob": v, "bytes": list(b)} for t, b, v in top],
    }


@dataclass
class TextCompletion:
    """A ``text_completion`` (``POST /v1/completions``): one choice per (prompt, sample).

    ``logprobs[i]`` is the legacy shape ``{tokens, token_logprobs, top_logprobs, text_offset}``
    or None when not asked for.

    >>> t = TextCompletion("cmpl-1", 0, "lima", choices=1, prompt_tokens=2)
    >>> t.texts[0] = "sea"; t.reasons[0] = "length"
    >>> t.response()["choices"][0]["text"]
    'sea'
    """

    id: str
    created: int
    model: str
    choices: int
    prompt_tokens: int
    completion_tokens: int = 0
    queue_time: float | None = None
    texts: list[str] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    logprobs: list[dict | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.texts = [""] * self.choices
        self.reasons = [None] * self.choices
        self.logprobs = [None] * self.choices

    def response(self) -> dict:
        choices = [
            {
                "index": i,
                "text": self.texts[i],
                "logprobs": self.logprobs[i],
                "finish_reason": self.reasons[i],
            }
            for i in range(self.choices)
        ]
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage(self.prompt_tokens, self.completion_tokens, self.queue_time),
        }

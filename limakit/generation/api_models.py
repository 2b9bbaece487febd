"""The OpenAI chat-completion shapes ``lima serve`` speaks: the request as a pydantic model, one
:class:`Completion` that builds both response shapes (a whole ``chat.completion`` or its
``chat.completion.chunk`` stream), and the error body.

Unknown request fields are ignored, as OpenAI-compatible servers do, so a client that also sends
``user`` or ``logprobs: false`` still works; every field that is read is checked strictly (no
``"0.5"`` for a number, no ``true`` for an integer).

>>> req = ChatRequest(model="lima", messages=[{"role": "user", "content": "Hi"}], top_p=0.5)
>>> req.messages[0].content, req.stops, req.token_limit
('Hi', None, ('max_tokens', None))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from limakit.example import Message


class ChatMessage(BaseModel):
    """One message. ``content`` may be a list of text parts (joined in order), as newer clients
    send; ``developer`` is the newer name of the ``system`` role."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str = Field(description="The text, or a list of {'type': 'text', 'text': ...} parts.")

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


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``: the OpenAI fields ``lima serve`` uses. Decoding fields left
    out take the server's defaults (LIMA's unless ``lima serve`` was given others)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, description="The served model's id, as /v1/models lists it.")
    messages: list[ChatMessage] = Field(
        min_length=1, description="The conversation so far; the last message is the user's."
    )
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, strict=True, description="0 = greedy decoding."
    )
    top_p: float | None = Field(
        None, ge=0.0, le=1.0, strict=True, description="Nucleus mass; 0 = greedy decoding."
    )
    repetition_penalty: float | None = Field(
        None, gt=0.0, le=10.0, strict=True, description="On tokens already generated; 1 = off."
    )
    n: int = Field(1, ge=1, le=16, strict=True, description="Answers to sample.")
    seed: int | None = Field(
        None, ge=-(2**63), le=2**63 - 1, strict=True, description="Same seed, same answers."
    )
    stop: Any = Field(None, description="A string or up to 4 strings that end an answer.")
    max_tokens: int | None = Field(None, ge=1, strict=True, description="New tokens at most.")
    max_completion_tokens: int | None = Field(
        None, ge=1, strict=True, description="The newer name of max_tokens (wins over it)."
    )
    stream: bool = Field(False, strict=True, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and len(value) <= 4 and all(isinstance(s, str) for s in value):
            return value
        raise ValueError("must be a string or a list of up to 4 strings")

    @property
    def stops(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop

    @property
    def token_limit(self) -> tuple[str, int | None]:
        """(the field that set it, the value): ``max_completion_tokens`` wins over ``max_tokens``."""
        if self.max_completion_tokens is not None:
            return "max_completion_tokens", self.max_completion_tokens
        return "max_tokens", self.max_tokens


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class Completion:
    """One completion with ``n`` choices, filled as text arrives; gives either response shape.

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
    texts: list[str] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.texts = [""] * self.n
        self.reasons = [None] * self.n

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def usage(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def opening(self, index: int) -> dict:
        """The first chunk of a choice: the assistant role, no text yet."""
        delta = {"role": "assistant", "content": ""}
        choice = {"index": index, "delta": delta, "finish_reason": None}
        return {**self._head("chat.completion.chunk"), "choices": [choice]}

    def add(self, index: int, delta: str, reason: str | None) -> dict:
        """Record text (and maybe the end) of choice ``index``; returns it as a chunk."""
        self.texts[index] += delta
        self.reasons[index] = reason or self.reasons[index]
        choice = {
            "index": index,
            "delta": {"content": delta} if delta else {},
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
                "logprobs": None,
            }
            for i in range(self.n)
        ]
        return {**self._head("chat.completion"), "choices": choices, "usage": self.usage()}

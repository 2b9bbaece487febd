"""The chat format, with LIMA's end-of-turn token, used by training and generation alike.

A conversation renders as::

    [bos]<|user|>\\n{question}<|eot|><|assistant|>\\n{answer}<|eot|>...

``<|eot|>`` is a *new* special token (not the model's EOS, which already means something to a
pretrained model). :func:`render` returns ``input_ids`` and ``labels`` from one tokenisation of
that text, so the mask cannot drift from the tokens: labels are -100 on the system and user turns
and on role headers, and equal the ids on assistant contents and their EOT. Labels are aligned with
``input_ids`` (the model shifts them for next-token prediction, as transformers does).

:func:`attach` adds the EOT to a tokenizer and model and stores this same format as the tokenizer's
``chat_template`` (with the EOT as its ``eos_token`` and the model's generation EOS), so a saved
checkpoint reproduces the training format in plain transformers, vLLM or ``lima chat``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from limakit.errors import LimaError
from limakit.example import Example, Message

IGNORE = -100
TrainOn = Literal["assistant", "last", "all"]


@dataclass(frozen=True)
class Template:
    """The chat format. ``eot`` is added to the vocabulary; headers are plain text."""

    eot: str = "<|eot|>"
    headers: dict[str, str] = field(
        default_factory=lambda: {
            "system": "<|system|>\n",
            "user": "<|user|>\n",
            "assistant": "<|assistant|>\n",
        }
    )

    @classmethod
    def from_tokenizer(cls, tokenizer, default_eot: str = "<|eot|>") -> Template:
        """The template a limakit checkpoint's tokenizer carries (its EOS is the EOT)."""
        marker = getattr(tokenizer, "chat_template", None) or ""
        if "limakit" in marker and tokenizer.eos_token:
            return cls(eot=tokenizer.eos_token)
        return cls(eot=default_eot)


@dataclass
class Rendered:
    input_ids: list[int]
    labels: list[int]
    trimmed: bool = False

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def has_token(tokenizer, token: str) -> bool:
    """Whether ``token`` is one vocabulary entry (cheap: ``get_vocab()`` copies the whole vocabulary)."""
    added = getattr(tokenizer, "added_tokens_encoder", None)
    if added is not None and token in added:
        return True
    tid = tokenizer.convert_tokens_to_ids(token)
    return tid is not None and tid != tokenizer.unk_token_id


def bos_text(tokenizer) -> str:
    """The BOS text if this tokenizer normally prepends one (Llama, Gemma), else ''."""
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or tokenizer.bos_token_id is None:
        return ""
    ids = tokenizer("a").input_ids
    return bos if ids and ids[0] == tokenizer.bos_token_id else ""


def render_text(
    messages: list[Message], tokenizer, template: Template, train_on: TrainOn = "assistant"
) -> tuple[str, list[tuple[int, int]]]:
    """The conversation as text, plus the character spans whose tokens are trained."""
    text = bos_text(tokenizer)
    spans: list[tuple[int, int]] = []
    last_assistant = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    for i, m in enumerate(messages):
        header = template.headers[m.role]
        start = len(text)
        text += header
        body_start = len(text)
        text += m.content + template.eot
        trained = (
            train_on == "all"
            or (train_on == "assistant" and m.role == "assistant")
            or (train_on == "last" and i == last_assistant)
        )
        if trained:
            spans.append((start if train_on == "all" else body_start, len(text)))
    return text, spans


def render(
    example: Example | list[Message],
    tokenizer,
    template: Template | None = None,
    *,
    max_len: int = 2048,
    train_on: TrainOn = "assistant",
) -> Rendered:
    """Tokens and labels for one training conversation, trimmed to ``max_len`` tokens.

    ``train_on``: ``"assistant"`` trains every assistant turn and its EOT (the default),
    ``"last"`` only the final assistant turn, ``"all"`` every token (prompts too).

    >>> r = render(ex, tok)  # doctest: +SKIP
    >>> tok.decode([i for i, l in zip(r.input_ids, r.labels) if l != -100])  # doctest: +SKIP
    'The answer.<|eot|>'
    """
    template = template or Template.from_tokenizer(tokenizer)
    if not has_token(tokenizer, template.eot):
        add_eot(tokenizer, None, template)  # never split the EOT into text pieces
    messages = example.messages if isinstance(example, Example) else example
    text, spans = render_text(messages, tokenizer, template, train_on)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [IGNORE] * len(ids)
    # A token is trained when it starts inside a trained span: one rule, one tokenisation.
    s = 0
    for t, (begin, _end) in enumerate(enc["offset_mapping"]):
        while s < len(spans) and begin >= spans[s][1]:
            s += 1
        if s < len(spans) and spans[s][0] <= begin < spans[s][1]:
            labels[t] = ids[t]
    trimmed = len(ids) > max_len
    if trimmed:
        ids, labels = ids[:max_len], labels[:max_len]
    return Rendered(ids, labels, trimmed)


def render_prompt(
    messages: list[Message], tokenizer, template: Template | None = None
) -> list[int]:
    """Token ids of a conversation prefix followed by the assistant header: what generation feeds."""
    template = template or Template.from_tokenizer(tokenizer)
    if not has_token(tokenizer, template.eot):
        add_eot(tokenizer, None, template)
    text, _ = render_text(messages, tokenizer, template)
    text += template.headers["assistant"]
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _jinja_str(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def chat_template(tokenizer, template: Template) -> str:
    """The same format as a Jinja ``chat_template``, for plain transformers, vLLM and servers."""
    h = template.headers
    bos = "{{ bos_token }}" if bos_text(tokenizer) else ""
    return (
        "{#- limakit chat format: role header, content, end-of-turn token -#}"
        + bos
        + "{%- for message in messages -%}"
        + "{%- if message['role'] == 'system' -%}{{ "
        + _jinja_str(h["system"])
        + " }}"
        + "{%- elif message['role'] == 'user' -%}{{ "
        + _jinja_str(h["user"])
        + " }}"
        + "{%- else -%}{{ "
        + _jinja_str(h["assistant"])
        + " }}{%- endif -%}"
        + "{{ message['content'] }}{{ "
        + _jinja_str(template.eot)
        + " }}"
        + "{%- endfor -%}"
        + "{%- if add_generation_prompt -%}{{ "
        + _jinja_str(h["assistant"])
        + " }}{%- endif -%}"
    )


def add_eot(tokenizer, model=None, template: Template | None = None, init: str = "mean") -> int:
    """Add the EOT special token and grow the embeddings; returns the EOT id.

    The new row(s) start as the mean row (``init="mean"``), or as a copy of the base model's EOS
    row (``init="eos"``): the new token then starts about as likely after an answer as the
    model's own end-of-text, instead of near zero, so even a short run learns to stop.
    Idempotent: a tokenizer that already has the EOT is left alone.
    """
    template = template or Template()
    if init not in ("mean", "eos"):
        raise LimaError(f"eot_init: {init!r} is not one of 'mean', 'eos'")
    source = tokenizer.eos_token_id if init == "eos" else None
    if not has_token(tokenizer, template.eot):
        tokenizer.add_special_tokens({"additional_special_tokens": [template.eot]})
    eot_id = tokenizer.convert_tokens_to_ids(template.eot)
    if model is not None and model.get_input_embeddings().weight.shape[0] <= eot_id:
        old = model.get_input_embeddings().weight.shape[0]
        if init == "eos" and (source is None or source >= old):
            raise LimaError(
                "eot_init=eos: the tokenizer has no EOS token of its own to copy; use eot_init=mean"
            )
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)

        def start(rows: torch.Tensor) -> torch.Tensor:
            return rows[source : source + 1] if source is not None else rows[:old].mean(0, True)

        with torch.no_grad():
            emb = model.get_input_embeddings().weight
            emb[old:] = start(emb)
            out = model.get_output_embeddings()
            if out is not None and out.weight.data_ptr() != emb.data_ptr():
                out.weight[old:] = start(out.weight)
                if getattr(out, "bias", None) is not None:
                    out.bias[old:] = start(out.bias[:, None])[:, 0]
    return eot_id


def attach(tokenizer, model=None, template: Template | None = None, eot_init: str = "mean") -> int:
    """Make ``tokenizer`` (and ``model``) speak the limakit format; returns the EOT id.

    Adds the EOT, stores the Jinja ``chat_template``, makes the EOT the tokenizer's EOS and the
    model's generation EOS, and gives the tokenizer a pad token if it has none.
    """
    template = template or Template()
    eot_id = add_eot(tokenizer, model, template, init=eot_init)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or template.eot
    tokenizer.chat_template = chat_template(tokenizer, template)
    tokenizer.eos_token = template.eot
    if model is not None:
        model.config.eos_token_id = eot_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.eos_token_id = eot_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return eot_id

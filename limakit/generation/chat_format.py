"""Which chat format a model is sampled in: limakit's, or the model's own chat template.

limakit's format (:mod:`limakit.records.template`) is the one its checkpoints are trained in, and the one a
base model without a chat template is prompted in. A model that carries a chat template of its own
(an instruct model used as a baseline, say) is sampled through that template instead, and stops at
its own end-of-turn tokens, as its makers sample it.

``auto`` picks limakit's format for a limakit checkpoint (its template says so) and for a model
without a chat template, and the model's own otherwise.

Content stays text in both formats: the conversation is rendered once with the messages and once
with placeholders in their place; the text between placeholders is the template's own, and only the
special tokens found there are control tokens. A user prompt that spells ``<|im_end|>`` is
characters, never the end of its turn.

An answer also ends where the model writes one of its format's markers, as if it had ended its turn
there: the text of a limakit role header or EOT (``<|user|>``, ``<|assistant|>``: plain text in
limakit's format), or a control token the model's own template writes other than its end of turn
(ChatML's ``<|im_start|>``). The marker is not part of the answer, which records ``"marker"`` as
its stop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from limakit.core.errors import LimaError
from limakit.generation.layouts import Layout
from limakit.records.example import Example, Message
from limakit.records.template import (  # noqa: F401  (recognising a limakit checkpoint lives there)
    TEMPLATES,
    Template,
    choose_template,
    has_own_template,
)

if TYPE_CHECKING:
    from limakit.models import LoadedModel

# End-of-turn tokens of well-known chat formats, stopped at when the template uses them.
TURN_ENDS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


def _ids(value) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return [int(v) for v in value if v is not None]
    return [int(value)]


def own_stop_ids(tokenizer, model=None, generation_config=None) -> set[int]:
    """Where a model sampled in its own format stops: its tokenizer's EOS, its generation config's
    EOS ids, and the end-of-turn token of a known format its template uses (ChatML's ``<|im_end|>``).
    """
    ids = set(_ids(tokenizer.eos_token_id))
    configs = [generation_config]
    if model is not None:
        configs += [getattr(model, "generation_config", None), getattr(model, "config", None)]
    for cfg in configs:
        if cfg is not None:
            ids.update(_ids(getattr(cfg, "eos_token_id", None)))
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(str(t) for t in template.values())
    from limakit.records.template import has_token

    for token in TURN_ENDS:
        if token in template and has_token(tokenizer, token):
            ids.add(int(tokenizer.convert_tokens_to_ids(token)))
    return ids


def own_marker_ids(tokenizer, stop_ids: set[int]) -> set[int]:
    """The control tokens a model's own chat template writes, other than those it stops at: a role
    header's ``<|im_start|>``, ``<start_of_turn>`` or ``<|start_header_id|>``."""
    from limakit.records.template import special_ids

    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(str(t) for t in template.values())
    found = set()
    for i in special_ids(tokenizer) - stop_ids:
        token = tokenizer.convert_ids_to_tokens(i)
        if token and token in template:
            found.add(i)
    return found


def _placeholder(i: int) -> str:
    return f"\ue000{i}\ue001"  # private-use characters: no template or tokenizer treats them


def own_prompt_ids(messages: list[Message], tokenizer) -> list[int]:
    """Token ids of ``messages`` in the model's own chat template, ready for the assistant's turn.

    Only the special tokens the template itself writes are control tokens; content is tokenised
    as text. A template that rewrites contents beyond trimming them cannot be followed this way:
    when some content spells a special token, that is an error (otherwise the text is tokenised
    as rendered).
    """
    from limakit.records.template import encode_marked, special_ids

    def apply(contents: list[str]) -> str:
        chat = [{"role": m.role, "content": c} for m, c in zip(messages, contents)]
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    text = apply([m.content for m in messages])
    holders = [_placeholder(i) for i in range(len(messages))]
    skeleton = apply(holders)
    pieces = re.split("\ue000\\d+\ue001", skeleton)
    found = re.findall("\ue000\\d+\ue001", skeleton)
    contents = None
    if found == holders:
        for variant in ([m.content for m in messages], [m.content.strip() for m in messages]):
            if "".join(p + c for p, c in zip(pieces, [*variant, ""])) == text:
                contents = variant
                break
    special = special_ids(tokenizer)
    if contents is None:
        spelled = {tokenizer.convert_ids_to_tokens(i) for i in special}
        if any(t and t in m.content for m in messages for t in spelled):
            raise LimaError(
                "the model's chat template rewrites message contents, and a message spells one of "
                "its special tokens: it cannot be sampled safely in its own format; use "
                "--template limakit"
            )
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    markers: list[tuple[int, str]] = []
    pos = 0
    for i, piece in enumerate(pieces):
        enc = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)
        for tid, (begin, _end) in zip(enc["input_ids"], enc["offset_mapping"]):
            if tid in special:
                markers.append((pos + begin, tokenizer.convert_ids_to_tokens(tid)))
        pos += len(piece) + (len(contents[i]) if i < len(contents) else 0)
    return encode_marked(tokenizer, text, markers)


@dataclass
class ChatFormat:
    """How prompts are rendered and where answers stop, for one model and one chosen format."""

    name: str  # "limakit" | "own" | a plain-text layout's name ("plain", "in-context")
    tokenizer: object
    stop_ids: set[int] = field(default_factory=set)
    template: Template | None = None  # limakit's format: the Template prompts are rendered in
    marker_ids: set[int] = field(default_factory=set)  # control tokens that end an answer too
    layout: Layout | None = None  # a base model's plain-text layout (limakit.generation.layouts)
    shots: tuple[Example, ...] = ()  # the in-context layout's example exchanges

    @classmethod
    def for_loaded(cls, loaded: LoadedModel, generation_config=None) -> ChatFormat:
        """The format a :class:`~limakit.models.LoadedModel` was loaded for: limakit's (its
        template and EOT id) or, without a template, the model's own."""
        if loaded.template is None:
            return cls._own(loaded.tokenizer, loaded.model, generation_config)
        return cls("limakit", loaded.tokenizer, {loaded.eot_id}, loaded.template)

    @classmethod
    def plain(cls, loaded: LoadedModel, layout: Layout, shots=()) -> ChatFormat:
        """A pretrained model prompted in a plain-text ``layout``: it stops at its own end of
        text or where it writes one of the layout's markers (the layout's end of an answer)."""
        stops = own_stop_ids(loaded.tokenizer, loaded.model)
        if not stops:
            raise LimaError(f"template {layout.name}: the model names no end-of-sequence token")
        return cls(layout.name, loaded.tokenizer, stops, layout=layout, shots=tuple(shots))

    @classmethod
    def _own(cls, tokenizer, model=None, generation_config=None) -> ChatFormat:
        stops = own_stop_ids(tokenizer, model, generation_config)
        if not stops:
            raise LimaError("template own: the model names no end-of-sequence token")
        return cls("own", tokenizer, stops, marker_ids=own_marker_ids(tokenizer, stops))

    @property
    def markers(self) -> tuple[str, ...]:
        """Texts that end an answer, as a marker: limakit's role headers and EOT (plain text
        there); none in a model's own format, whose markers are control tokens (``marker_ids``).

        >>> from limakit.records.template import Template
        >>> ChatFormat("limakit", None, {7}, Template()).markers
        ('<|eot|>', '<|system|>', '<|user|>', '<|assistant|>')
        """
        if self.layout is not None:
            return self.layout.markers
        if self.template is None:
            return ()
        texts = [self.template.eot, *(h.strip() for h in self.template.headers.values())]
        return tuple(t for t in dict.fromkeys(texts) if t)

    @property
    def eot_id(self) -> int:
        """The main stop token (the EOT of limakit's format; the lowest stop id otherwise)."""
        if self.name == "limakit":
            return next(iter(self.stop_ids))
        eos = self.tokenizer.eos_token_id
        return eos if eos in self.stop_ids else min(self.stop_ids)

    @property
    def marker_stop(self) -> str:
        """The stop an answer records when it ends at a marker: in a plain-text layout the marker
        is the layout's own end of an answer ("eot"); elsewhere the model wrote past its turn."""
        return "eot" if self.layout is not None else "marker"

    def answer_text(self, text: str) -> str:
        """The answer as recorded: without a layout's closing text, without outer spaces."""
        return self.layout.answer(text) if self.layout is not None else text.strip()

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        if self.layout is not None:
            from limakit.records.template import bos_text, encode_text

            ids = encode_text(self.tokenizer, self.layout.render(messages, list(self.shots)))
            return ([self.tokenizer.bos_token_id] if bos_text(self.tokenizer) else []) + ids
        if self.name == "own":
            return own_prompt_ids(messages, self.tokenizer)
        from limakit.records.template import render_prompt

        return render_prompt(messages, self.tokenizer, self.template)

"""The chat format, with LIMA's end-of-turn token, used by training and generation alike.

A conversation renders as::

    [bos]<|user|>\\n{question}<|eot|><|assistant|>\\n{answer}<|eot|>...

``<|eot|>`` is a *new* special token (not the model's EOS, which already means something to a
pretrained model). :func:`render` returns ``input_ids`` and ``labels`` from one tokenisation of
that text, so the mask cannot drift from the tokens: labels are -100 on the system and user turns
and on role headers, and equal the ids on assistant contents and their EOT. Labels are aligned with
``input_ids`` (the model shifts them for next-token prediction, as transformers does). Each token
also has a loss weight: 1 on answers, ``prompt_weight`` elsewhere (0: LIMA's protocol).

:func:`limakit.models.attach` adds the EOT to a tokenizer and model and stores this same format as
the tokenizer's ``chat_template`` (with the EOT as its ``eos_token`` and the model's generation
EOS), so a saved checkpoint reproduces the training format in plain transformers, vLLM or
``lima chat``.

The whole template (EOT and role headers) also travels beside the weights, in
``limakit_template.json``: :func:`save_tokenizer` writes it with the tokenizer and
:func:`read_template` reads it back; a checkpoint is limakit's when its folder holds that file.
In memory the template travels with the loaded model (``limakit.models.LoadedModel.template``),
never looked up from the tokenizer: every function here that needs it takes it.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from limakit.core.errors import LimaError
from limakit.records.example import Example, Message

IGNORE = -100
TrainOn = Literal["assistant", "last", "all"]
TEMPLATE_FILE = "limakit_template.json"  # the template, saved beside a checkpoint's weights
TEMPLATE_VERSION = 1
TEMPLATES = ("auto", "own", "limakit")


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

    def token_id(self, tokenizer) -> int:
        """The EOT's id in ``tokenizer`` (which must already have it)."""
        return int(tokenizer.convert_tokens_to_ids(self.eot))

    def to_dict(self) -> dict:
        return {"version": TEMPLATE_VERSION, "eot": self.eot, "headers": dict(self.headers)}

    @classmethod
    def from_dict(cls, data: dict) -> Template:
        version = data.get("version")
        if version != TEMPLATE_VERSION:
            raise LimaError(
                f"template file version {version!r}; this limakit reads version {TEMPLATE_VERSION}"
            )
        headers = data.get("headers")
        if not isinstance(data.get("eot"), str) or not isinstance(headers, dict):
            raise LimaError("template file: needs an 'eot' string and a 'headers' table")
        missing = {"system", "user", "assistant"} - set(headers)
        if missing:
            raise LimaError(f"template file: no header for {', '.join(sorted(missing))}")
        return cls(eot=data["eot"], headers={k: str(v) for k, v in headers.items()})


def has_own_template(tokenizer, saved: Template | None = None) -> bool:
    """Whether the model has a chat template that is not limakit's (``saved``: the template its
    checkpoint was saved with, None for a model that is not a limakit checkpoint)."""
    return bool(getattr(tokenizer, "chat_template", None)) and saved is None


def choose_template(tokenizer, choice: str = "auto", saved: Template | None = None) -> str:
    """``"limakit"`` or ``"own"``: the format ``choice`` (auto, own, limakit) means for this model.

    ``saved``: the template the model's checkpoint was saved with (:func:`read_template`), None
    for a model that is not a limakit checkpoint. ``own`` on a limakit checkpoint is limakit's
    format (that is its own); ``own`` on a model without a chat template is an error.
    """
    if choice not in TEMPLATES:
        raise LimaError(f"unknown template {choice!r}; choose one of {', '.join(TEMPLATES)}")
    if choice == "limakit":
        return "limakit"
    if has_own_template(tokenizer, saved):
        return "own"
    if choice == "own" and saved is None:
        raise LimaError(
            "template own: this model has no chat template of its own; use limakit (or auto)"
        )
    return "limakit"


def save_template(folder: str | Path, template: Template) -> Path:
    """Write ``template`` to ``folder/limakit_template.json``; returns the file."""
    path = Path(folder) / TEMPLATE_FILE
    path.write_text(json.dumps(template.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def read_template(folder: str | Path) -> Template | None:
    """The template saved in ``folder``, or None when it has no template file (not a limakit
    checkpoint)."""
    path = Path(folder) / TEMPLATE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LimaError(f"{path}: unreadable template file ({e})") from None
    if not isinstance(data, dict):
        raise LimaError(f"{path}: a template file holds one JSON object")
    try:
        return Template.from_dict(data)
    except LimaError as e:
        raise LimaError(f"{path}: {e}") from None


def save_tokenizer(tokenizer, folder: str | Path, template: Template | None) -> None:
    """``tokenizer.save_pretrained(folder)``, plus the template file for a model that speaks
    ``template`` (None: a model in its own format, saved without one)."""
    tokenizer.save_pretrained(folder)
    if template is not None:
        save_template(folder, template)


@dataclass
class Rendered:
    """Ids, labels (-100 = no loss) and each token's loss weight (0 exactly where the label is -100)."""

    input_ids: list[int]
    labels: list[int]
    weights: list[float]
    trimmed: bool = False

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def has_token(tokenizer, token: str) -> bool:
    """Whether ``token`` is one vocabulary entry (cheap: ``get_vocab()`` copies the whole
    vocabulary, and a fast tokenizer's ``added_tokens_encoder`` is rebuilt on every read, which
    costs milliseconds with Gemma's thousands of added tokens: it is asked last)."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is not None and tid != tokenizer.unk_token_id:
        return True
    added = getattr(tokenizer, "added_tokens_encoder", None)
    return added is not None and token in added


def bos_text(tokenizer) -> str:
    """The BOS text if this tokenizer normally prepends one (Llama, Gemma), else ''."""
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or tokenizer.bos_token_id is None:
        return ""
    ids = tokenizer("a").input_ids
    return bos if ids and ids[0] == tokenizer.bos_token_id else ""


def _layout(
    messages: list[Message],
    tokenizer,
    template: Template,
    train_on: TrainOn = "assistant",
    prompt_weight: float = 0.0,
) -> tuple[str, list[tuple[int, int, float]], list[tuple[int, str]]]:
    """The conversation as text, its character spans with loss weights above 0, and the template's
    own special tokens (BOS, each EOT) with where they start: the only control tokens allowed.

    One rule: answers (every assistant turn, or the last) and their EOT weigh 1, every other token
    from the first header on ``prompt_weight``; ``train_on="all"`` is ``prompt_weight=1``.
    """
    if train_on == "all":
        train_on, prompt_weight = "assistant", 1.0
    text = bos_text(tokenizer)
    markers = [(0, text)] if text else []
    spans: list[tuple[int, int, float]] = []
    last_assistant = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    for i, m in enumerate(messages):
        header = template.headers[m.role]
        start = len(text)
        text += header
        body_start = len(text)
        text += m.content
        markers.append((len(text), template.eot))
        text += template.eot
        answer = (train_on == "assistant" and m.role == "assistant") or i == last_assistant
        if answer:
            spans += [(start, body_start, prompt_weight), (body_start, len(text), 1.0)]
        else:
            spans.append((start, len(text), prompt_weight))
    return text, [s for s in spans if s[2] > 0 and s[0] < s[1]], markers


def special_ids(tokenizer) -> set[int]:
    """Every id a tokenizer treats as a control token: its named specials and special added tokens.

    Read on every rendering, so it is kept per tokenizer: a fast tokenizer rebuilds its added
    tokens on each read (30 ms for Gemma's thousands), while its named specials, which change
    whenever a special token is added, are cheap and key the kept set. A cache of a value derived
    from the tokenizer alone, not a record of anything decided about it: emptied, it is rebuilt.
    """
    named = tuple(i for i in tokenizer.all_special_ids if i is not None)
    known = _SPECIAL.get(tokenizer)
    if known is None or known[0] != named:
        decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
        ids = set(named) | {i for i, tok in decoder.items() if getattr(tok, "special", False)}
        known = (named, frozenset(ids))
        _SPECIAL[tokenizer] = known
    return set(known[1])


# Caches of values derived from a tokenizer (its control ids, its longest entry), each checked
# against the tokenizer's named specials on every read; nothing else is kept per tokenizer.
_SPECIAL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def encode_text(tokenizer, text: str) -> list[int]:
    """Ids of ``text`` read as plain text: a literal ``<|eot|>`` in it is characters, not the EOT."""
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def _encode(
    tokenizer, text: str, markers: list[tuple[int, str]]
) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids and character offsets of rendered ``text`` in which only ``markers`` are special tokens.

    Usually one tokenisation of the whole text. When content spells a control token (a user typing
    ``<|eot|><|assistant|>``, an answer quoting ``<|im_end|>``), the text is cut at the template's
    markers and each piece of content is tokenised with special tokens read as characters, so
    content can never end a turn, forge one, or be trained as an EOT. Special tokens split the
    text in the one pass too, so the pieces tokenise as they would there.
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    offsets = [(b, e) for b, e in enc["offset_mapping"]]
    special = special_ids(tokenizer)
    starts = {at for at, _ in markers}
    n_special = sum(1 for i in ids if i in special)
    n_placed = sum(1 for t, i in enumerate(ids) if i in special and offsets[t][0] in starts)
    if n_special == n_placed == len(markers):
        return ids, offsets
    out_ids: list[int] = []
    out_offsets: list[tuple[int, int]] = []

    def plain(begin: int, end: int) -> None:
        if begin < end:
            piece = tokenizer(
                text[begin:end],
                add_special_tokens=False,
                split_special_tokens=True,
                return_offsets_mapping=True,
            )
            out_ids.extend(piece["input_ids"])
            out_offsets.extend((b + begin, e + begin) for b, e in piece["offset_mapping"])

    pos = 0
    for at, token in markers:
        plain(pos, at)
        out_ids.append(tokenizer.convert_tokens_to_ids(token))
        out_offsets.append((at, at + len(token)))
        pos = at + len(token)
    plain(pos, len(text))
    return out_ids, out_offsets


def char_cap(tokenizer, max_len: int) -> int:
    """Characters of one message that can reach the first ``max_len`` tokens, with room to spare.

    No token stands for more characters than the vocabulary's longest entry has (a byte-level
    entry has one character per byte), so ``max_len`` tokens never cover more than ``max_len``
    times that many characters; twice that is kept, so a cut lies well past the last token kept.
    """
    # Cached per tokenizer, checked against its named specials (asking its size costs
    # milliseconds on a 262k vocabulary): the tokens limakit adds are short markers, never the
    # longest entry.
    named = tuple(tokenizer.all_special_ids)
    known = _LONGEST.get(tokenizer)
    if known is None or known[0] != named:
        known = (named, max((len(t) for t in tokenizer.get_vocab()), default=1))
        _LONGEST[tokenizer] = known
    return 2 * max_len * max(known[1], 1)


_LONGEST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def encode_marked(tokenizer, text: str, markers: list[tuple[int, str]]) -> list[int]:
    """Ids of ``text`` in which only ``markers`` (character position, special token) are control
    tokens: every other spelling of a special token is read as characters. For another chat
    format's rendered text, with its own special tokens as the markers."""
    return _encode(tokenizer, text, markers)[0]


def render(
    example: Example | list[Message],
    tokenizer,
    template: Template | None = None,
    *,
    max_len: int = 2048,
    train_on: TrainOn = "assistant",
    prompt_weight: float = 0.0,
    drop_prompts: bool = False,
) -> Rendered:
    """Tokens, labels and loss weights for one training conversation, trimmed to ``max_len``.

    ``template``: the format of the model trained (its ``LoadedModel.template``); None is the
    default one.

    ``train_on``: ``"assistant"`` trains every assistant turn and its EOT (the default),
    ``"last"`` only the final assistant turn, ``"all"`` every token (``prompt_weight=1``).
    ``prompt_weight`` (0 to 1): the weight of every token that is not an answer (Instruction
    Modelling trains them at 1). ``drop_prompts``: the user turns are rendered empty, headers and
    EOTs kept (Response Tuning).

    >>> r = render(ex, tok)  # doctest: +SKIP
    >>> tok.decode([i for i, l in zip(r.input_ids, r.labels) if l != -100])  # doctest: +SKIP
    'The answer.<|eot|>'
    """
    if not 0.0 <= prompt_weight <= 1.0:
        raise LimaError(f"prompt weight {prompt_weight} is not between 0 and 1")
    messages = example.messages if isinstance(example, Example) else example
    if drop_prompts:
        messages = [Message(m.role, "") if m.role == "user" else m for m in messages]
    # A 100 MB answer is tokenised as its first few hundred thousand characters, not whole, only
    # to be trimmed to ``max_len`` tokens. A message shorter than 2 * max_len characters is never
    # cut (cheap to test first); a cut conversation that does not fill ``max_len`` tokens (a
    # tokenizer that drops characters) is rendered whole instead, so the cut changes nothing.
    if any(len(m.content) > 2 * max_len for m in messages):
        cap = char_cap(tokenizer, max_len)
        if any(len(m.content) > cap for m in messages):
            cut = [Message(m.role, m.content[:cap]) for m in messages]
            r = _render_whole(
                cut,
                tokenizer,
                template,
                max_len=max_len,
                train_on=train_on,
                prompt_weight=prompt_weight,
            )
            if len(r.input_ids) >= max_len:
                return Rendered(r.input_ids, r.labels, r.weights, trimmed=True)
    return _render_whole(
        messages,
        tokenizer,
        template,
        max_len=max_len,
        train_on=train_on,
        prompt_weight=prompt_weight,
    )


def _render_whole(
    messages: list[Message],
    tokenizer,
    template: Template | None,
    *,
    max_len: int,
    train_on: TrainOn,
    prompt_weight: float,
) -> Rendered:
    """:func:`render` without the cut: every character of every message is tokenised."""
    template = template or Template()
    if not has_token(tokenizer, template.eot):
        add_eot_token(tokenizer, template)  # never split the EOT into text pieces
    text, spans, markers = _layout(messages, tokenizer, template, train_on, prompt_weight)
    ids, offsets = _encode(tokenizer, text, markers)
    labels = [IGNORE] * len(ids)
    weights = [0.0] * len(ids)
    # A token takes the weight of the span it starts in: one rule, one tokenisation.
    s = 0
    for t, (begin, _end) in enumerate(offsets):
        while s < len(spans) and begin >= spans[s][1]:
            s += 1
        if s < len(spans) and spans[s][0] <= begin < spans[s][1]:
            labels[t], weights[t] = ids[t], spans[s][2]
    trimmed = len(ids) > max_len
    if trimmed:
        ids, labels, weights = ids[:max_len], labels[:max_len], weights[:max_len]
    return Rendered(ids, labels, weights, trimmed)


def render_prompt(
    messages: list[Message], tokenizer, template: Template | None = None
) -> list[int]:
    """Token ids of a conversation prefix followed by the assistant header: what generation feeds
    (``template``: the loaded model's; None is the default one)."""
    template = template or Template()
    if not has_token(tokenizer, template.eot):
        add_eot_token(tokenizer, template)
    text, _, markers = _layout(messages, tokenizer, template)
    text += template.headers["assistant"]
    return _encode(tokenizer, text, markers)[0]


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


def add_eot_token(tokenizer, template: Template | None = None) -> int:
    """Add the template's EOT to ``tokenizer`` as a special token (if it lacks it); its id. The
    model's side, growing the embeddings to match, is :func:`limakit.models.add_eot`."""
    template = template or Template()
    if not has_token(tokenizer, template.eot):
        tokenizer.add_special_tokens({"additional_special_tokens": [template.eot]})
    return tokenizer.convert_tokens_to_ids(template.eot)

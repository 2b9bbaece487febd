"""Token-distribution shift: what alignment changed, token by token (Lin et al. 2023, URIAL).

For every token of an answer (written by any model), its rank under a *base* model given the same
context: the base runs teacher-forced over context + answer, the context rendered in the chat
format the answer was sampled in (``meta.template``). URIAL's classes: **unshifted** (the base
ranks the token first), **marginal** (second or third), **shifted** (lower). The Superficial
Alignment Hypothesis predicts that an aligned model writes almost only tokens its base ranks first,
and departs on a few stylistic ones: openings, discourse markers, the end of its turn.

Tokens the base's vocabulary lacks (the EOT a template added) have no meaningful rank: they are
counted apart, in neither class. Exact by construction: answers written greedily (temperature 0,
no repetition penalty) by the base itself, in the same format, are all unshifted, up to the float
rounding that separates a decode step from the teacher-forced pass (and ties, ranked first).

>>> rank_class(1), rank_class(3), rank_class(4), rank_class(None)
('unshifted', 'marginal', 'shifted', 'apart')
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import torch

from limakit.core.errors import LimaError
from limakit.core.files import atomic_write, make_folder, write_json, write_jsonl
from limakit.evaluation.answers import model_name, read_answers
from limakit.evaluation.metrics import Measure, measure
from limakit.records.example import Example

if TYPE_CHECKING:
    from limakit.models import LoadedModel

CLASSES = ("unshifted", "marginal", "shifted")
BUCKETS = (("1-10", 0, 10), ("11-50", 10, 50), ("51+", 50, None))  # answer token positions
TOP_SHIFTED = 50
FORMATS = ("limakit", "own")  # the chat formats a context can be rendered in here


def rank_class(rank: int | None) -> str:
    """URIAL's class of a rank (1 = the base's first choice); None = a token the base lacks."""
    if rank is None:
        return "apart"
    return "unshifted" if rank == 1 else "marginal" if rank <= 3 else "shifted"


@dataclass
class Item:
    """One generated answer turn to score: its context's ids and its own."""

    id: str
    sample: int
    message: int  # the answer's index in the conversation's messages
    prompt: str  # the user message it answers, for the page
    context: list[int]
    answer: list[int]
    ranks: list[int | None] = field(default_factory=list)  # filled by rank_tokens
    top: list[int] = field(default_factory=list)  # the base's first choice at each position
    tied: int = 0  # tokens ranked first together with another token (equal logits)
    # Whether the answer's text gives back as many tokens as were generated (None: unknown). An
    # answer is recorded as text, its ends stripped of whitespace and without special tokens:
    # where the model wrote those, the tokens ranked here are not all the ones it wrote.
    faithful: bool | None = None


class Position(TypedDict):
    span: str
    shifted: Measure  # the shifted share of the tokens at these positions, over answers
    tokens: int


class Shifted(TypedDict):
    token: str
    id: int
    count: int  # times shifted
    seen: int  # times written (ranked)
    base: str  # what the base ranked first there most often


class FileShift(TypedDict):
    answers: str
    model: str
    template: str
    decoding: str  # "greedy", or how the answers were sampled
    note: str | None
    n: int  # answers with at least one ranked token
    tokens: int  # ranked tokens
    apart: dict[str, int]  # tokens the base lacks, by text: in no class
    cut: int  # answer tokens past the base's context length, not scored
    ties: int
    retokenised: int  # answers whose text does not give back the tokens generated
    unshifted: Measure
    marginal: Measure
    shifted: Measure
    pooled: dict[str, float]  # each class's share of all ranked tokens together
    positions: list[Position]
    top_shifted: list[Shifted]


class ShiftSummary(TypedDict):
    base: str
    device: str
    dtype: str
    files: list[FileShift]


# --- reading answers ---------------------------------------------------------------------------


def answer_format(answers: dict[tuple[str, int], Example], path, override: str | None) -> str:
    """The chat format the answers were sampled in (their ``meta.template``, or ``override``)."""
    if override is None:
        found = {str(ex.meta.get("template")) for ex in answers.values()}
        if len(found) != 1 or "None" in found:
            said = ", ".join(sorted(found))
            raise LimaError(f"{path}: the answers record no single chat format ({said}); pass "
                            "--template limakit or own, the format they were sampled in")  # fmt: skip
        override = found.pop()
    if override not in FORMATS:
        raise LimaError(f"{path}: answers in the {override!r} format; lima shift renders contexts "
                        f"in {' or '.join(FORMATS)} (--template)")  # fmt: skip
    return override


def decoding_text(answers: dict[tuple[str, int], Example]) -> tuple[str, str | None]:
    """How the answers were decoded, and a note when they were not greedy (URIAL's figures are)."""
    seen = set()
    for ex in answers.values():
        d = ex.meta.get("decoding")
        d = d if isinstance(d, dict) else {}
        seen.add((d.get("temperature"), d.get("top_p"), d.get("repetition_penalty")))
    if len(seen) != 1 or None in next(iter(seen))[::2]:
        return "unknown", "the answers record no single decoding; URIAL measures greedy answers"
    t, p, rp = seen.pop()
    if t > 0:
        text = f"sampled (temperature {t}, top_p {p}, repetition penalty {rp})"
        return text, "sampled, not greedy: URIAL's figures are for greedy answers, and sampling "\
                     "alone shifts tokens the base ranks first"  # fmt: skip
    if rp != 1:
        return f"greedy, repetition penalty {rp}", "the repetition penalty moves greedy " \
               "answers off the argmax: even the base's own answers shift"  # fmt: skip
    return "greedy", None


def _turns(ex: Example) -> list[tuple[int, str | None, int | None]]:
    """(message index, stop, tokens generated) of each generated answer of a conversation."""
    turns = ex.meta.get("turns")
    if isinstance(turns, list) and turns:
        return [(int(t["message"]), t.get("stop"), t.get("new_tokens")) for t in turns]
    return [(len(ex.messages) - 1, ex.meta.get("stop"), ex.meta.get("new_tokens"))]


def items_for(answers: dict[tuple[str, int], Example], fmt, limit: int) -> tuple[list[Item], int]:
    """The answers' turns as token ids: the context exactly as generation rendered it, then the
    answer as text (and the end of turn where it stopped there). Returns the items and the number
    of answer tokens cut at the base's context length ``limit``."""
    from limakit.records.template import encode_text

    items, cut = [], 0
    for (pid, sample), ex in answers.items():
        for at, stop, generated in _turns(ex):
            context = fmt.prompt_ids(ex.messages[:at])
            answer = encode_text(fmt.tokenizer, ex.messages[at].content)
            faithful = None  # a marker stop's tokens were generated, and are not in the text
            if isinstance(generated, int) and stop in ("eot", "length"):
                faithful = len(answer) == generated
            if stop == "eot":
                answer.append(fmt.eot_id)
            room = max(limit - len(context), 0)
            cut += max(len(answer) - room, 0)
            prompt = next((m.content for m in reversed(ex.messages[:at]) if m.role == "user"), "")
            items.append(Item(pid, sample, at, prompt, context, answer[:room], faithful=faithful))
    return items, cut


# --- the teacher-forced pass ---------------------------------------------------------------------


def _batches(items: list[Item], budget: int) -> list[list[Item]]:
    """Longest first, as many per batch as fit ``budget`` padded tokens (one item at least)."""
    order = sorted(items, key=lambda it: -(len(it.context) + len(it.answer)))
    out: list[list[Item]] = []
    for it in order:
        if out and (len(out[-1]) + 1) * _length(out[-1][0]) <= budget:
            out[-1].append(it)
        else:
            out.append([it])
    return out


def _length(it: Item) -> int:
    return len(it.context) + len(it.answer)


def rank_tokens(
    loaded: LoadedModel, items: list[Item], *, batch_tokens: int = 8192, chunk: int = 512
) -> None:
    """Fill each item's ``ranks``, ``top`` and ``tied`` from one teacher-forced pass of the base
    over its context + answer, in batches of at most ``batch_tokens`` padded tokens. Only the
    answer positions go through the output head; every tensor lives on the model's device.

    A rank is 1 + the number of tokens with a strictly higher logit, so a tie for first is rank 1.
    """
    from limakit.models import host_to_device

    model = loaded.model
    backbone = getattr(model, model.base_model_prefix)
    head = model.get_output_embeddings()
    pad = loaded.tokenizer.pad_token_id or 0
    device = loaded.device
    with torch.inference_mode():
        for batch in _batches([it for it in items if it.answer], batch_tokens):
            T = _length(batch[0])
            # Right padding needs no attention mask: under causal attention no real token looks
            # ahead at it, and the padding's own outputs are never read (the fast causal kernel).
            ids = [it.context + it.answer + [pad] * (T - _length(it)) for it in batch]
            # Position p predicts token p + 1: the answer's tokens, from the context's last on.
            where = [b * T + p for b, it in enumerate(batch)
                     for p in range(len(it.context) - 1, _length(it) - 1)]  # fmt: skip
            hidden = backbone(
                input_ids=host_to_device(ids, device, torch.long), use_cache=False
            ).last_hidden_state  # (B, T, H)
            index = host_to_device(where, device, torch.long)
            h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, index)  # (N, H)
            y = host_to_device([t for it in batch for t in it.answer], device, torch.long)  # (N,)
            ranks, tops, ties = [], [], []
            for s in range(0, h.shape[0], chunk):
                # In the head's own dtype: an upcast copy would add no precision to its logits.
                logits = head(h[s : s + chunk])  # (n, V)
                picked = logits.gather(1, y[s : s + chunk, None])  # (n, 1)
                rank = (logits > picked).sum(1) + 1
                best = logits.topk(2, dim=1)  # the first choice, and the runner-up for ties
                ranks.append(rank)
                tops.append(best.indices[:, 0])
                ties.append((rank == 1) & (best.values[:, 1] == picked[:, 0]))
            found = torch.stack([torch.cat(ranks), torch.cat(tops), torch.cat(ties).long()])
            rank_list, top_list, tie_list = found.tolist()  # one wait for the device per batch
            at = 0
            for it in batch:
                n = len(it.answer)
                it.ranks, it.top = rank_list[at : at + n], top_list[at : at + n]
                it.tied = sum(tie_list[at : at + n])
                at += n


# --- the figures ---------------------------------------------------------------------------------


def _share(ranks: list[int | None], cls: str) -> float | None:
    ranked = [r for r in ranks if r is not None]
    return sum(rank_class(r) == cls for r in ranked) / len(ranked) if ranked else None


def summarise(items: list[Item], text) -> dict:
    """Each class's share over answers (mean of per-answer shares, 95% bootstrap interval), the
    pooled shares, the shifted share by position, and the tokens most often shifted. ``text``
    turns an id into its text."""
    scored = [it for it in items if any(r is not None for r in it.ranks)]
    ranks = [r for it in scored for r in it.ranks if r is not None]
    out: dict = {"n": len(scored), "tokens": len(ranks)}
    for cls in CLASSES:
        out[cls] = measure([_share(it.ranks, cls) for it in scored])  # type: ignore[misc]
    out["pooled"] = {c: round(sum(rank_class(r) == c for r in ranks) / max(len(ranks), 1), 6)
                     for c in CLASSES}  # fmt: skip
    out["positions"] = []
    for span, lo, hi in BUCKETS:
        parts = [it.ranks[lo:hi] for it in scored]
        shares = [s for s in (_share(p, "shifted") for p in parts) if s is not None]
        tokens = sum(r is not None for p in parts for r in p)
        out["positions"].append({"span": span, "shifted": measure(shares), "tokens": tokens})
    shifted: Counter = Counter()
    seen: Counter = Counter()
    instead: dict[int, Counter] = {}
    apart: Counter = Counter()
    for it in items:
        for tok, rank, top in zip(it.answer, it.ranks, it.top):
            if rank is None:
                apart[text(tok)] += 1
                continue
            seen[tok] += 1
            if rank_class(rank) == "shifted":
                shifted[tok] += 1
                instead.setdefault(tok, Counter())[top] += 1
    out["top_shifted"] = [
        {"token": text(t), "id": t, "count": c, "seen": seen[t],
         "base": text(instead[t].most_common(1)[0][0])}
        for t, c in sorted(shifted.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_SHIFTED]
    ]  # fmt: skip
    out["apart"] = dict(apart)
    out["ties"] = sum(it.tied for it in items)
    out["retokenised"] = sum(it.faithful is False for it in items)
    return out


def token_rows(path: str, items: list[Item], text) -> list[dict]:
    """``tokens.jsonl``: per answer, each token with its rank, class and the base's first choice."""
    return [{"answers": path, "id": it.id, "sample": it.sample, "message": it.message,
             "prompt": it.prompt, "faithful": it.faithful,
             "tokens": [{"token": text(t), "id": t, "rank": r, "class": rank_class(r),
                         "base": text(top), "base_id": top}
                        for t, r, top in zip(it.answer, it.ranks, it.top)]}
            for it in items]  # fmt: skip


# --- the base and the answers' tokenizer ---------------------------------------------------------


def base_format(base: LoadedModel) -> str:
    """The chat format a loaded base renders contexts in: limakit's when a template is attached,
    its own otherwise."""
    return "own" if base.template is None else "limakit"


def _template_tokens(base: LoadedModel) -> set[str]:
    return set() if base.template is None else {base.template.eot}


def apart_ids(base: LoadedModel) -> set[int]:
    """Ids of the template's tokens that the base's own vocabulary lacks (the EOT added for the
    limakit format): empty in the model's own format, and for a base that is itself a limakit
    checkpoint (its folder carries the template, so it has learned the EOT)."""
    from limakit.models import resolve
    from limakit.records.template import TEMPLATE_FILE

    if base.template is None:
        return set()
    try:
        folder = Path(resolve(base.name))
    except LimaError:
        folder = None
    if folder is not None and (folder / TEMPLATE_FILE).is_file():
        return set()
    return {base.eot_id}


def check_tokenizer(base: LoadedModel, model: str, path) -> None:
    """Refuse answers whose model's tokenizer is not the base's (its vocabulary, leaving out the
    template's added tokens): ranks under the base then mean nothing."""
    from limakit.models import ALIASES, load_tokenizer

    if model in (base.name, str(base.name)):
        return
    if model not in ALIASES and not Path(model).is_dir():
        raise LimaError(f"{path}: cannot tell which tokenizer wrote these answers (their model "
                        f"{model!r} is no alias or model folder here); pass --answers-model with "
                        "the model or checkpoint that wrote them")  # fmt: skip
    skip = _template_tokens(base)
    theirs = {t: i for t, i in load_tokenizer(model).get_vocab().items() if t not in skip}
    ours = {t: i for t, i in base.tokenizer.get_vocab().items() if t not in skip}
    if theirs != ours:
        differ = sorted(set(theirs.items()) ^ set(ours.items()), key=str)
        raise LimaError(
            f"{path}: written by {model}, whose tokenizer is not the base {base.name}'s "
            f"({len(theirs)} and {len(ours)} entries, {len(differ)} differing, e.g. "
            f"{differ[0][0]!r}); ranks under the base mean nothing for them: measure against a "
            "base with the same tokenizer"
        )


# --- one call: files in, figures out ------------------------------------------------------------


def shift_summary(
    base: LoadedModel,
    answers_paths: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    models: list[str | None] | None = None,
    labels: list[str] | None = None,
    template: str | None = None,
    batch_tokens: int | None = None,
) -> ShiftSummary:
    """Measure each answers file against ``base`` (a :class:`~limakit.models.LoadedModel`, loaded
    in the answers' chat format: limakit's for limakit answers, template None for "own" ones) and
    write ``out_dir/shift.json``, ``tokens.jsonl``, ``shift.html`` and ``shift_positions.svg``.

    ``models``: per file, the model or checkpoint that wrote it (default: its ``meta.model``),
    whose tokenizer must be the base's; ``labels``: per file, the name figures and pages show
    (default: that model). ``template`` overrides the answers' recorded format.

    >>> s = shift_summary(load_model_for("smollm2-135m"), ["answers.jsonl"], "shift")  # doctest: +SKIP
    >>> s["files"][0]["unshifted"]["value"]  # doctest: +SKIP
    0.995
    """
    from limakit.evaluation.shift_page import position_svg, write_page
    from limakit.generation.batch import context_length
    from limakit.generation.chat_format import ChatFormat

    paths = [str(p) for p in answers_paths]
    models = list(models) if models else [None] * len(paths)
    if len(models) == 1 and len(paths) > 1:
        models = models * len(paths)
    if len(models) != len(paths) or (labels is not None and len(labels) != len(paths)):
        raise LimaError(f"{len(models)} answers models (or labels) for {len(paths)} answers files")
    read = [read_answers(p) for p in paths]  # every file is read before the model runs
    for path, answers, model in zip(paths, read, models, strict=True):
        fmt = answer_format(answers, path, template)
        if fmt != base_format(base):
            raise LimaError(f"{path}: answers in the {fmt} format, and the base is loaded for the "
                            f"{base_format(base)} format: load it for {fmt}")  # fmt: skip
        check_tokenizer(base, model or model_name(answers, path), path)
    chat = ChatFormat.for_loaded(base)
    apart = apart_ids(base)
    names: dict[int, str] = {}

    def text(i: int) -> str:
        if i not in names:
            names[i] = base.tokenizer.decode([i])
        return names[i]

    budget = batch_tokens or (8192 if base.device.type == "cpu" else 65536)
    files, rows = [], []
    for i, (path, answers, model) in enumerate(zip(paths, read, models, strict=True)):
        items, cut = items_for(answers, chat, context_length(base.model))
        rank_tokens(base, items, batch_tokens=budget)
        for it in items:
            it.ranks = [None if t in apart else r for t, r in zip(it.answer, it.ranks)]
        decoding, note = decoding_text(answers)
        figures = summarise(items, text)
        label = labels[i] if labels else model or model_name(answers, path)
        files.append({"answers": path, "model": label,
                      "template": base_format(base), "decoding": decoding, "note": note,
                      "cut": cut, **figures})  # fmt: skip
        rows += token_rows(path, items, text)
    summary: ShiftSummary = {"base": str(base.name), "device": str(base.device),
                             "dtype": str(base.dtype).split(".")[-1], "files": files}  # fmt: skip
    out = make_folder(out_dir)
    write_jsonl(out / "tokens.jsonl", rows)
    with atomic_write(out / "shift_positions.svg") as f:
        f.write(position_svg(summary))
    write_page(out / "shift.html", summary, rows)
    write_json(out / "shift.json", summary)  # last: its presence says the rest is there
    return summary

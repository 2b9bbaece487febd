"""Per-example scores for the selectors: an LLM judge's ratings and a local model's IFD.

Judge ratings go through the judging component (:mod:`limakit.judging`: its backends, retries, reply
cache and strict parser) with the rating prompts in ``limakit/judging/prompts/``. IFD comes from one local
causal LM's mean per-token loss on the answer, with and without the prompt before it, computed in
batches on the model's device. Both are stored in the :class:`ScoreCache` by content hash and
scorer, so only new examples cost anything on a rerun.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from limakit.core.errors import LimaError
from limakit.judging.prompt import PROMPT_DIR, ScalePrompt, load_prompt_file, question_text
from limakit.judging.runner import run_judgements
from limakit.records.example import Example

if TYPE_CHECKING:
    from limakit.models import LoadedModel
    from limakit.records.template import Template

SCALE = {"rating": 5, "complexity": 6, "quality": 6}
PROMPT_FILES = {
    "rating": "select-rating-v1.txt",
    "complexity": "select-complexity-v1.txt",
    "quality": "select-quality-v1.txt",
}


def score_prompt(kind: str) -> ScalePrompt:
    """The prompt for ``rating`` (AlpaGasus, 1-5), ``complexity`` or ``quality`` (Deita, 1-6)."""
    if kind not in PROMPT_FILES:
        raise LimaError(f"unknown score kind {kind!r}; choose from {', '.join(PROMPT_FILES)}")
    return ScalePrompt(load_prompt_file(PROMPT_DIR / PROMPT_FILES[kind], "likert"), SCALE[kind])


@dataclass
class ScoreReport:
    """What a scoring pass cost and what it could not score (never dropped silently)."""

    computed: int = 0
    cached: int = 0
    unscored: int = 0
    calls: int = 0
    notes: list[str] = field(default_factory=list)


def judge_scores(
    pool: Sequence[Example],
    keys: Sequence[str],
    kind: str,
    judge_cfg,
    cache,
    judge_cache,
) -> tuple[np.ndarray, ScoreReport]:
    """One judge score per example (NaN when the judge gave none); cached by content and judge."""
    prompt = score_prompt(kind)
    scorer = f"judge-v1:{kind}:{judge_cfg.backend}:{judge_cfg.model}:{prompt.version}"
    scores = cache.get_scores(scorer, keys)
    report = ScoreReport()
    todo: dict[str, int] = {}
    for i in np.flatnonzero(np.isnan(scores)):
        todo.setdefault(keys[i], int(i))  # identical conversations are judged once
    report.cached = len(pool) - int(np.isnan(scores).sum())
    if todo:
        firsts = list(todo.values())
        requests = []
        for i in firsts:
            ex = pool[i]
            question = question_text([m for m in ex.messages[:-1]])
            requests.append(prompt.messages(question, ex.answer or ""))
        outcomes = run_judgements(requests, prompt, judge_cfg, judge_cache, f"judge {kind}")
        got = [prompt.score(o) for o in outcomes]
        report.calls = sum(o.calls for o in outcomes)
        ok = [(keys[i], s) for i, s in zip(firsts, got) if np.isfinite(s)]
        cache.put_scores(scorer, [k for k, _ in ok], [s for _, s in ok])
        by_key = {keys[i]: s for i, s in zip(firsts, got)}
        for i in np.flatnonzero(np.isnan(scores)):
            scores[i] = by_key[keys[i]]
        report.computed = len(firsts)
        errors = sum(1 for o in outcomes if o.error)
        if len(pool) and not np.isfinite(scores).any():
            first = next((o.error for o in outcomes if o.error), None)
            raise LimaError(
                f"judge {kind}: no example could be scored ("
                + (f"{errors} calls failed, e.g. {first}" if first else "no parseable rating")
                + "); check the judge config"
            )
        if errors:
            report.notes.append(f"judge {kind}: {errors} calls failed (a rerun retries them)")
    report.unscored = int(np.isnan(scores).sum())
    if report.unscored:
        report.notes.append(
            f"judge {kind}: {report.unscored} examples got no parseable score; they were not "
            "selected"
        )
    return scores, report


def ifd_pair(
    ex: Example, tok, template: Template, max_tokens: int, eot_id: int | None = None
) -> tuple[list[int], list[int], int]:
    """(ids with the prompt, ids without it, number of answer tokens scored at the end of both).

    ``eot_id``: the template's EOT id, as the loader looked it up (looked up here if None).

    Both sequences end in the same answer tokens (the last assistant turn, without its EOT, cut to
    ``max_tokens // 2``); with the prompt they follow the whole conversation before it (trimmed from
    the left), without it only the BOS and the assistant header.
    """
    from limakit.records.template import IGNORE, bos_text, render

    r = render(ex, tok, template, max_len=10**9, train_on="last")
    first = next((t for t, lab in enumerate(r.labels) if lab != IGNORE), len(r.labels))
    targets = r.input_ids[first:]
    eot = template.token_id(tok) if eot_id is None else eot_id
    if targets and targets[-1] == eot:
        targets = targets[:-1]
    targets = targets[: max_tokens // 2]
    prefix = r.input_ids[:first][-(max_tokens - len(targets)) :]
    alone = tok(bos_text(tok) + template.headers["assistant"], add_special_tokens=False)[
        "input_ids"
    ]
    return prefix + targets, alone + targets, len(targets)


def answer_losses(model, seqs: list[list[int]], n_targets: list[int], pad_id: int) -> np.ndarray:
    """Mean cross-entropy of the last ``n`` tokens of each sequence, in one left-padded forward
    pass on the model's device; NaN for a sequence with no target."""
    import torch

    from limakit.models import host_to_device

    device = next(model.parameters()).device
    width = max(len(s) for s in seqs)
    k = max(max(n_targets), 1)
    ids = host_to_device([[pad_id] * (width - len(s)) + s for s in seqs], device, torch.long)
    mask = host_to_device([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device, torch.long)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=k + 1
        ).logits  # (B, k+1, vocab): the last k+1 positions
        pred = logits[:, :-1].float()  # predicts the last k tokens
        gold = ids[:, -k:]
        nll = torch.nn.functional.cross_entropy(
            pred.reshape(-1, pred.shape[-1]), gold.reshape(-1), reduction="none"
        ).view(len(seqs), k)  # (B, k)
        n = host_to_device(n_targets, device, torch.long)
        col = torch.arange(k, device=device)
        keep = (col[None, :] >= (k - n)[:, None]).float()  # the last n of each row
        mean = (nll * keep).sum(1) / keep.sum(1).clamp(min=1.0)
    out = mean.cpu().numpy().astype(np.float64)
    out[np.asarray(n_targets) == 0] = np.nan
    return out


def ifd_scores(  # noqa: PLR0913 - the pool, its cache and model, two limits, the bar
    pool: Sequence[Example],
    keys: Sequence[str],
    load: Callable[[], LoadedModel],
    scorer: str,
    cache,
    max_tokens: int,
    batch_size: int,
    advance: Callable[[int], None] | None = None,
    chunk: int = 512,
) -> tuple[np.ndarray, ScoreReport]:
    """IFD = loss(answer | prompt) / loss(answer alone) per example; ``load()`` returns the
    scoring :class:`~limakit.models.LoadedModel` (in limakit's format) and is called only when
    some example is not cached."""
    scores = cache.get_scores(scorer, keys)
    report = ScoreReport(cached=int(np.isfinite(scores).sum()))
    if advance is not None:
        advance(report.cached)
    todo: dict[str, int] = {}
    for i in np.flatnonzero(np.isnan(scores)):
        todo.setdefault(keys[i], int(i))
    if todo:
        loaded = load()
        model, tok, template, eot = loaded.model, loaded.tokenizer, loaded.template, loaded.eot_id
        if template is None:
            raise LimaError(f"ifd: {loaded.name} is loaded without limakit's format to score in")
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        firsts = list(todo.values())
        by_key: dict[str, float] = {}
        # Token ids are made a chunk at a time (memory flat in the pool size); inside a chunk,
        # similar lengths go together so that a batch pads little.
        for c in range(0, len(firsts), chunk):
            pairs = {
                i: ifd_pair(pool[i], tok, template, max_tokens, eot) for i in firsts[c : c + chunk]
            }
            order = sorted(pairs, key=lambda i: len(pairs[i][0]))
            for s in range(0, len(order), batch_size):
                batch = order[s : s + batch_size]
                n = [pairs[i][2] for i in batch]
                with_prompt = answer_losses(model, [pairs[i][0] for i in batch], n, pad)
                alone = answer_losses(model, [pairs[i][1] for i in batch], n, pad)
                ratio = with_prompt / alone
                for i, v in zip(batch, ratio):
                    by_key[keys[i]] = float(v)
                done = [(keys[i], float(v)) for i, v in zip(batch, ratio) if np.isfinite(v)]
                cache.put_scores(scorer, [k for k, _ in done], [v for _, v in done])
                if advance is not None:
                    advance(len(batch))
        missing = np.flatnonzero(np.isnan(scores))
        for i in missing:
            scores[i] = by_key[keys[i]]
        if advance is not None:
            advance(len(missing) - len(firsts))  # repeated conversations, scored once
        report.computed = len(firsts)
    report.unscored = int(np.isnan(scores).sum())
    if report.unscored:
        report.notes.append(f"ifd: {report.unscored} examples have no answer tokens to score")
    return scores, report

"""Log-probabilities: scoring tokens on the model's own distribution, and reporting them in
OpenAI's two shapes (chat ``logprobs.content`` entries, and the legacy completions ``logprobs``).

The scores are the log-softmax of the model's raw logits, as OpenAI reports them, not the
distribution after the repetition penalty, temperature and top-p that a token was sampled from.

>>> _char_offsets("héllo", [1, 2, 2])
[0, 1, 2]
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from limakit.generation.api_schemas import logprob_entry
from limakit.generation.streaming import TokenPieces


class TokenLogprob(NamedTuple):
    """A token's log-probability and the ``k`` most likely tokens there, as (id, logprob), best
    first (``k`` = the request's ``logprobs`` or ``prompt_logprobs``; may be empty)."""

    logprob: float
    top: list[tuple[int, float]]


def score_tokens(logits: torch.Tensor, tokens: torch.Tensor, k: int) -> list[TokenLogprob]:
    """Row ``i``'s log-softmax at ``tokens[i]`` and its top ``k``: the model's own distribution.

    The token's value and the top values come from the same tensor, so a token that is the most
    likely one has exactly the top value (clients compare them to tell a greedy token).
    """
    # -9999 for a token the model rules out (-inf), as other servers do: JSON has no infinity.
    logprobs = torch.log_softmax(logits.float(), dim=-1).clamp_min(-9999.0)
    picked = logprobs.gather(1, tokens[:, None])[:, 0].tolist()
    if k <= 0:
        return [TokenLogprob(p, []) for p in picked]
    values, ids = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1)
    return [
        TokenLogprob(p, list(zip(i, v))) for p, i, v in zip(picked, ids.tolist(), values.tolist())
    ]


def chat_entries(pieces: TokenPieces):
    """A function that turns scored tokens into chat ``logprobs.content`` entries."""

    def make(scored: list[tuple[int, TokenLogprob]]) -> list[dict]:
        out = []
        for token, score in scored:
            text, raw = pieces(token)
            top = [(*pieces(t), v) for t, v in score.top]
            out.append(logprob_entry(text, raw, score.logprob, top))
        return out

    return make


def legacy_logprobs(req, kept, pieces: TokenPieces, echoed: str, answer: str) -> dict:
    """The legacy completions ``logprobs`` of one engine request: ``tokens``, ``token_logprobs``,
    ``top_logprobs`` (a dict per token: the most likely tokens and the token itself) and
    ``text_offset`` (where each token starts in the choice's text) over the echoed prompt, if any,
    then the answer's tokens ``kept`` (and the stop token when the answer ended at one)."""
    scored: list[tuple[int, TokenLogprob | None]] = []
    if req.prompt_logprobs is not None:
        ids = req.prompt_ids
        scored += [(ids[0], None), *zip(ids[1:], req.prompt_token_logprobs)]
    scored += kept
    if req.end_token is not None and len(req.token_logprobs) > len(req.output_ids):
        scored.append((req.end_token, req.token_logprobs[-1]))
    tokens, logprobs, tops, sizes = [], [], [], []
    for token, score in scored:
        text, raw = pieces(token)
        tokens.append(text)
        special = token in pieces.special
        sizes.append(0 if special else len(raw))
        if score is None:
            logprobs.append(None)
            tops.append(None)
            continue
        logprobs.append(score.logprob)
        top = {pieces.text(t): v for t, v in reversed(score.top)}  # the best wins a clash
        top.setdefault(text, score.logprob)
        tops.append(top)
    return {
        "tokens": tokens,
        "token_logprobs": logprobs,
        "top_logprobs": tops,
        "text_offset": _char_offsets(echoed + answer, sizes),
    }


def _char_offsets(text: str, sizes: list[int]) -> list[int]:
    """Where each token starts in ``text``, from the UTF-8 sizes of the tokens before it."""
    index = [i for i, ch in enumerate(text) for _ in range(len(ch.encode("utf-8", "replace")))]
    index.append(len(text))
    out, at = [], 0
    for size in sizes:
        out.append(index[min(at, len(index) - 1)])
        at += size
    return out

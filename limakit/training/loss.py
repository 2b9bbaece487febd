"""Cross-entropy over the vocabulary without ever holding the logits of the whole batch.

Only positions with a target are projected through ``lm_head`` (prompt tokens cost nothing), in
chunks of ``chunk`` tokens. For each chunk the forward pass also computes the gradients with
respect to the hidden states and the head weight, so autograd keeps no logits: peak memory is one
chunk's logits (``chunk x vocab``), whatever the batch size. The loss is a *sum*; the caller
divides by the number of target tokens of the whole global batch.

>>> loss = chunked_lm_loss(hidden, head.weight, targets, chunk=1024)  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from limakit.template import IGNORE


class _ChunkedLinearCE(torch.autograd.Function):
    """sum_i CE(h_i @ W^T + b, y_i) with gradients computed chunk by chunk in the forward pass."""

    @staticmethod
    def forward(ctx, h, weight, bias, y, chunk: int, compute_dtype):  # h: (N, H), y: (N,)
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        grad_b = (
            torch.zeros_like(bias, dtype=torch.float32) if bias is not None and need_b else None
        )
        w = weight.to(compute_dtype)
        for s in range(0, h.shape[0], chunk):
            hc = h[s : s + chunk].to(compute_dtype)
            yc = y[s : s + chunk]
            logits = (hc @ w.T).float()  # (chunk, V): the only vocabulary-sized tensor alive
            if bias is not None:
                logits += bias.float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, yc[:, None]).squeeze(1)).sum()
            # d(CE)/d(logits) = softmax - onehot, reusing the logits buffer.
            g = logits.sub_(lse[:, None]).exp_()
            g[torch.arange(len(yc), device=g.device), yc] -= 1.0
            gc = g.to(compute_dtype)
            if grad_h is not None:
                grad_h[s : s + chunk] = (gc @ w).to(h.dtype)
            if grad_w is not None:
                grad_w += (gc.T @ hc).float()
            if grad_b is not None:
                grad_b += g.sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        wd, bd = ctx.dtypes
        return (
            None if grad_h is None else grad_h * grad_out.to(grad_h.dtype),
            None if grad_w is None else (grad_w * grad_out).to(wd),
            None if grad_b is None else (grad_b * grad_out).to(bd),
            None,
            None,
            None,
        )


def chunked_lm_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    chunk: int = 1024,
    softcap: float | None = None,
) -> torch.Tensor:
    """Summed next-token cross-entropy of ``hidden`` (B, T, H) against ``targets`` (B, T).

    ``targets`` are already shifted (position t holds the token t predicts); -100 is ignored.
    """
    keep = targets.reshape(-1) != IGNORE
    h = hidden.reshape(-1, hidden.shape[-1])[keep]  # (N, H): trained positions only
    y = targets.reshape(-1)[keep]
    if h.shape[0] == 0:
        return hidden.sum() * 0.0  # keeps the graph (and DDP's reducer) connected
    if softcap is not None:  # Gemma-2 style logit soft-capping: no fused path, plain chunks
        total = hidden.new_zeros((), dtype=torch.float32)
        for s in range(0, h.shape[0], chunk):
            logits = F.linear(h[s : s + chunk], weight, bias).float()
            logits = softcap * torch.tanh(logits / softcap)
            total = total + F.cross_entropy(logits, y[s : s + chunk], reduction="sum")
        return total
    if torch.is_autocast_enabled(h.device.type):
        compute_dtype = torch.get_autocast_dtype(h.device.type)
    else:
        compute_dtype = h.dtype
    with torch.autocast(h.device.type, enabled=False):
        return _ChunkedLinearCE.apply(h, weight, bias, y, chunk, compute_dtype)

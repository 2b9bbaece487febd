"""Cross-entropy over the vocabulary without ever holding the logits of the whole batch.

Only positions with a target are projected through ``lm_head`` (prompt tokens cost nothing), in
chunks of ``chunk`` tokens. For each chunk the forward pass also computes the gradients with
respect to the hidden states and the head weight, so autograd keeps no logits: peak memory is one
chunk's logits (``chunk x vocab``), whatever the batch size.

The softmax runs in place in one reusable float32 buffer per (chunk, vocabulary) shape, so a step
does not allocate (and, on the CPU, page-fault) hundreds of megabytes of fresh logits per chunk.
The result is ``scale`` times the summed loss, and the gradients are computed for that scaled
value directly: the caller passes ``1 / n_target`` of the whole global batch, and no
vocabulary-sized gradient is ever multiplied afterwards. With ``target_weight`` (a prompt
loss weight), each target's loss and gradient are multiplied by its weight, and ``n_target`` is
the weights' sum: the weighted mean, which weights of 1 make the plain mean.

>>> loss = chunked_lm_loss(hidden, head.weight, targets, chunk=1024, scale=1 / n)  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from limakit.records.template import IGNORE


class Workspace:
    """Reusable logits buffers, kept by the caller between calls (one per model is plenty)."""

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}

    def get(self, rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (cols, dtype, device)
        buf = self._buffers.get(key)
        if buf is None or buf.shape[0] < rows:
            self._buffers[key] = buf = torch.empty(rows, cols, dtype=dtype, device=device)
        return buf[:rows]


class _ChunkedLinearCE(torch.autograd.Function):
    """scale * sum_i w_i CE(h_i @ W^T + b, y_i), gradients computed chunk by chunk in the forward
    (``wt``: the per-target weights w_i, or None for all 1)."""

    @staticmethod
    def forward(  # noqa: PLR0913 - autograd's apply passes every input positionally
        ctx, h, weight, bias, y, chunk: int, compute_dtype, scale: float, ws: Workspace, wt=None
    ):
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = None
        grad_b = (
            torch.zeros_like(bias, dtype=torch.float32) if bias is not None and need_b else None
        )
        w = weight.to(compute_dtype)
        V = w.shape[0]
        rows = min(chunk, h.shape[0])
        for s in range(0, h.shape[0], chunk):
            hc = h[s : s + chunk].to(compute_dtype)
            yc = y[s : s + chunk]
            n = hc.shape[0]
            logits = ws.get(rows, V, torch.float32, h.device)[:n]  # the only (chunk, V) tensor
            if compute_dtype == torch.float32:
                torch.mm(hc, w.t(), out=logits)
            else:
                low = ws.get(rows, V, compute_dtype, h.device)[:n]
                torch.mm(hc, w.t(), out=low)
                logits.copy_(low)
            if bias is not None:
                logits += bias.float()
            picked = logits.gather(1, yc[:, None]).squeeze(1)
            top = logits.amax(dim=1, keepdim=True)
            logits.sub_(top).exp_()
            sums = logits.sum(dim=1, keepdim=True)
            lse = (top + sums.log()).squeeze(1)
            # d(scale * w * CE)/d(logits) = scale * w * (softmax - onehot), in the same buffer.
            if wt is None:
                total += (lse - picked).sum()
                logits.mul_(scale / sums)
                logits[torch.arange(n, device=logits.device), yc] -= scale
            else:
                wc = wt[s : s + chunk].float()
                total += ((lse - picked) * wc).sum()
                logits.mul_(scale * wc[:, None] / sums)
                logits[torch.arange(n, device=logits.device), yc] -= scale * wc
            if compute_dtype == torch.float32:
                gc = logits
            else:
                gc = low
                gc.copy_(logits)
            if grad_h is not None:
                grad_h[s : s + chunk] = (gc @ w).to(h.dtype)
            if need_w:
                if grad_w is None:
                    grad_w = gc.t() @ hc
                else:
                    grad_w.addmm_(gc.t(), hc)
            if grad_b is not None:
                grad_b += logits.sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total * scale

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        wd, bd = ctx.dtypes
        unit = grad_out.device.type == "cpu" and float(grad_out) == 1.0
        if grad_w is not None:
            grad_w = grad_w.to(wd) if unit else (grad_w.float() * grad_out).to(wd)
        return (
            None if grad_h is None else grad_h * grad_out.to(grad_h.dtype),
            grad_w,
            None if grad_b is None else (grad_b * grad_out).to(bd),
            None,
            None,
            None,
            None,
            None,
            None,
        )


def compute_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype matmuls on ``device`` run in: autocast's when it is on, else ``dtype``."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


def chunked_lm_loss(  # noqa: PLR0913 - keyword-only options of the one fused loss
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    chunk: int = 1024,
    softcap: float | None = None,
    scale: float = 1.0,
    workspace: Workspace | None = None,
    index: torch.Tensor | None = None,
    target_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``scale`` x the summed next-token cross-entropy of ``hidden`` (B, T, H) against ``targets``.

    ``targets`` are already shifted (position t holds the token t predicts); -100 is ignored.
    ``index`` (optional) holds the flat positions whose target is not -100, computed on the host
    beforehand: selecting by it needs no host sync, where a boolean mask does (on a GPU).
    ``target_weight`` (optional, (N,), one per selected target in order): each target's loss weight.
    """
    if index is None:
        if target_weight is not None:
            raise ValueError("target_weight needs the index it is aligned with")
        index = (targets.reshape(-1) != IGNORE).nonzero().squeeze(1)
    h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, index)  # (N, H): trained only
    y = targets.reshape(-1).index_select(0, index)
    if h.shape[0] == 0:
        return hidden.sum() * 0.0  # keeps the graph (and DDP's reducer) connected
    if softcap is not None:  # Gemma-2 style logit soft-capping: no fused path, plain chunks
        total = hidden.new_zeros((), dtype=torch.float32)
        for s in range(0, h.shape[0], chunk):
            logits = F.linear(h[s : s + chunk], weight, bias).float()
            logits = softcap * torch.tanh(logits / softcap)
            ce = F.cross_entropy(logits, y[s : s + chunk], reduction="none")
            w = None if target_weight is None else target_weight[s : s + chunk]
            total = total + (ce if w is None else ce * w).sum()
        return total * scale
    with torch.autocast(h.device.type, enabled=False):
        return _ChunkedLinearCE.apply(
            h,
            weight,
            bias,
            y,
            chunk,
            compute_dtype(h.dtype, h.device),
            scale,
            workspace or Workspace(),
            target_weight,
        )

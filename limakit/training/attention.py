"""Packed-row attention that stays on the fast causal kernel: causal within each example, none across.

A packed row holds several examples back to back. A dense block-diagonal (T, T) mask is exact but
pushes CPU SDPA onto its slow path (the full attention matrix is kept for backward), so instead the
row is cut at example boundaries and each piece runs ``scaled_dot_product_attention`` with
``is_causal=True``. Every linear layer still sees the whole packed row, which is where the time goes.

It is registered with transformers' ``AttentionInterface`` under :data:`NAME`; the segment lengths
travel as the ``limakit_segments`` keyword of the model's forward, which transformers hands down to
the attention function. Without that keyword it behaves exactly like the stock SDPA attention, so a
model set to this implementation still evaluates and generates normally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "limakit_packed"


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (B, H, T, D)
    key: torch.Tensor,  # (B, Hkv, T, D)
    value: torch.Tensor,  # (B, Hkv, T, D)
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    segments = kwargs.pop("limakit_segments", None)
    if segments is None or attention_mask is not None or kwargs.get("softcap") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    n_rep = query.shape[1] // key.shape[1]
    if n_rep > 1:  # grouped-query attention: share each key/value head across its query heads
        key = key.repeat_interleave(n_rep, dim=1)
        value = value.repeat_interleave(n_rep, dim=1)
    rows = []
    for b, lengths in enumerate(segments):
        parts, t = [], 0
        for n in lengths:
            sl = slice(t, t + n)
            parts.append(
                F.scaled_dot_product_attention(
                    query[b : b + 1, :, sl],
                    key[b : b + 1, :, sl],
                    value[b : b + 1, :, sl],
                    dropout_p=dropout,
                    scale=scaling,
                    is_causal=n > 1,
                )
            )
            t += n
        assert t == query.shape[2], f"segments cover {t} of {query.shape[2]} positions"
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    out = torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]  # (B, H, T, D)
    return out.transpose(1, 2).contiguous(), None  # (B, T, H, D), as transformers expects


def register() -> str:
    """Make :data:`NAME` a valid ``attn_implementation``; returns it. Idempotent."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, packed_attention)
    return NAME


def segment_lengths(rows_lengths: list[list[int]], total: int) -> list[list[int]]:
    """Per row: its examples' lengths, plus one padding segment to reach ``total`` positions.

    >>> segment_lengths([[3, 2], [4]], 5)
    [[3, 2], [4, 1]]
    """
    out = []
    for lengths in rows_lengths:
        pad = total - sum(lengths)
        out.append(list(lengths) + ([pad] if pad > 0 else []))
    return out

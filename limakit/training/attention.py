"""Packed-row attention: causal within each example, none across, on a kernel that suits the device.

A packed row holds several examples back to back. Which kernel computes that best depends on the
device, so the choice is made per micro-batch (``kernel="auto"``):

- ``segments`` (the CPU default): the row is cut at example boundaries and each piece runs
  ``scaled_dot_product_attention`` with ``is_causal=True``. A dense block-diagonal mask would push
  CPU SDPA onto its slow path; one call per example keeps the fast causal kernel.
- ``varlen`` (the CUDA default in bf16/fp16): PyTorch's own flash-attention variable-length kernel
  (``torch.nn.attention.varlen``), one call for the whole micro-batch with cumulative sequence
  lengths. The per-segment loop is wrong for a GPU: one launch (and one cuDNN plan) per example.
- ``flex``: FlexAttention with a document-causal block mask built once per micro-batch (compiled on
  CUDA; eager elsewhere, which is exact but slow).
- ``sdpa-mask``: SDPA with a dense block-diagonal boolean mask built once per micro-batch on the
  device; the fallback on CUDA when no variable-length kernel fits (fp32, attention dropout).

When the ``flash_attn`` package is installed on a CUDA machine the trainer uses transformers'
``flash_attention_2`` instead, which reads the boundaries from the position ids.

The implementation is registered with transformers' ``AttentionInterface`` under :data:`NAME`; the
micro-batch's :class:`PackedRows` travels as the ``limakit_packed`` keyword of the model's forward,
which transformers hands down to the attention function. Without it the function is the stock SDPA
attention, so a model set to this implementation still evaluates and generates normally.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from limakit.core.errors import LimaError
from limakit.models import host_to_device

NAME = "limakit_packed"
KERNELS = ("auto", "segments", "varlen", "flex", "sdpa-mask")


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


def _find_varlen():
    """(varlen_attn, its causal keyword arguments, whether it takes ``enable_gqa``) or None.

    Resolved once at import (not inside a compiled region). PyTorch 2.10 spells causal
    ``is_causal=True``; later versions ``window_size=(-1, 0)``.
    """
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters
    causal = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
    return varlen_attn, causal, "enable_gqa" in params


_VARLEN = _find_varlen()


@functools.cache
def _flex():
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError:
        return None
    return flex_attention, create_block_mask


@functools.cache
def _compiled_flex():
    return torch.compile(_flex()[0], dynamic=False)


def varlen_available(device: torch.device) -> bool:
    """Whether PyTorch's variable-length flash kernel can run on ``device``."""
    return device.type == "cuda" and _VARLEN is not None


def pick_kernel(kernel: str, device: torch.device, dtype: torch.dtype, dropout: float) -> str:
    """The concrete kernel for ``kernel`` ("auto" or a name) on this device and dtype."""
    if kernel == "varlen" and not varlen_available(device):
        raise LimaError(
            f"packed_attention=varlen needs a CUDA device and PyTorch >= 2.10 (torch.nn.attention."
            f"varlen); this run is on {device.type} with torch {torch.__version__}: use auto"
        )
    if kernel == "flex" and _flex() is None:
        raise LimaError(
            f"packed_attention=flex needs FlexAttention (PyTorch >= 2.5; this is "
            f"{torch.__version__}): use auto"
        )
    if kernel != "auto":
        return kernel
    if device.type != "cuda":
        return "segments"
    if dtype in (torch.bfloat16, torch.float16) and dropout == 0.0 and varlen_available(device):
        return "varlen"
    return "sdpa-mask"


@dataclass
class PackedRows:
    """One micro-batch's example boundaries, with what each kernel needs built at most once.

    ``lengths`` holds, per row, the lengths of its segments (examples, then padding) and covers
    every position. Device tensors are made from host data copied once, without a host sync.
    """

    lengths: list[list[int]]
    device: torch.device
    kernel: str = "auto"
    _cache: dict = field(default_factory=dict, repr=False)

    def prepare(self, dtype: torch.dtype, dropout: float = 0.0) -> PackedRows:
        """Fix the kernel for this device and dtype and build what it needs, before the forward.

        Everything is then ready when the (possibly compiled) attention layers read it.
        """
        self.kernel = pick_kernel(self.kernel, self.device, dtype, dropout)
        if self.kernel == "varlen":
            self.cu_seqlens()
        elif self.kernel == "sdpa-mask":
            self.dense_mask()
        elif self.kernel == "flex":
            self.block_mask()
        return self

    def cu_seqlens(self) -> torch.Tensor:
        """Cumulative segment starts over the flattened (B x T) positions (int32), on the device."""
        if "cu" not in self._cache:
            flat = [n for row in self.lengths for n in row]
            cu = torch.zeros(len(flat) + 1, dtype=torch.int32)
            cu[1:] = torch.tensor(flat, dtype=torch.int32).cumsum(0)
            self._cache["cu"] = host_to_device(cu, self.device)
        return self._cache["cu"]

    def segment_ids(self) -> torch.Tensor:
        """(B, T) index of each position's segment within its row, on the device."""
        if "seg" not in self._cache:
            rows = [
                torch.repeat_interleave(torch.arange(len(r)), torch.tensor(r)) for r in self.lengths
            ]
            self._cache["seg"] = host_to_device(torch.stack(rows), self.device)
        return self._cache["seg"]

    def longest(self) -> int:
        """The longest segment of the micro-batch."""
        return max(n for row in self.lengths for n in row)

    def dense_mask(self, window: int | None = None) -> torch.Tensor:
        """(B, 1, T, T) boolean block-diagonal causal mask (True = may attend), built on the device;
        ``window``: each position also sees only the last ``window`` keys (itself included)."""
        if ("mask", window) not in self._cache:
            seg = self.segment_ids()
            T = seg.shape[1]
            causal = torch.ones(T, T, dtype=torch.bool, device=self.device).tril_()
            if window:
                causal.triu_(-(window - 1))
            mask = ((seg[:, :, None] == seg[:, None, :]) & causal)[:, None]
            self._cache[("mask", window)] = mask
        return self._cache[("mask", window)]

    def block_mask(self):
        """FlexAttention's document-causal block mask for this micro-batch."""
        if "block" not in self._cache:
            seg = self.segment_ids()
            B, T = seg.shape

            def document_causal(b, h, q, kv):
                return (seg[b, q] == seg[b, kv]) & (q >= kv)

            self._cache["block"] = _flex()[1](document_causal, B, None, T, T, device=self.device)
        return self._cache["block"]


def _segments(query, key, value, packed: PackedRows, dropout: float, scaling) -> torch.Tensor:
    """Causal SDPA on each example's piece of each row: (B, H, T, D)."""
    rows = []
    for b, lengths in enumerate(packed.lengths):
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
    return torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]


def _varlen_attention(query, key, value, packed: PackedRows, scaling) -> torch.Tensor:
    """One flash variable-length call over the flattened micro-batch: (B, T, H, D)."""
    fn, causal, takes_gqa = _VARLEN
    B, H, T, D = query.shape
    n_rep = H // key.shape[1]
    if n_rep > 1 and not takes_gqa:
        key = key.repeat_interleave(n_rep, dim=1)
        value = value.repeat_interleave(n_rep, dim=1)
    q = query.transpose(1, 2).reshape(B * T, H, D)
    k = key.transpose(1, 2).reshape(B * T, key.shape[1], D)
    v = value.transpose(1, 2).reshape(B * T, value.shape[1], D)
    cu = packed.cu_seqlens()
    extra = dict(causal, enable_gqa=True) if takes_gqa and n_rep > 1 else causal
    # The row length bounds every segment's: a shape, not a host value (no recompile per batch).
    out = fn(q, k, v, cu, cu, T, T, scale=scaling, **extra)
    return out.reshape(B, T, H, D)


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

    packed: PackedRows | None = kwargs.pop("limakit_packed", None)
    window = kwargs.get("sliding_window")
    # A sliding-window layer (Gemma 3's local ones) over a row longer than its window: the mask
    # transformers hands down is causal within the window over the whole packed row, so the
    # row's examples would see each other. One dense mask keeps both rules.
    windowed = packed is not None and bool(window) and packed.longest() > window
    softcap = kwargs.get("softcap") is not None
    if packed is None or (attention_mask is not None and not windowed) or softcap:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    kernel = packed.kernel
    if kernel == "auto" or (kernel == "varlen" and dropout > 0.0):  # varlen has no dropout
        kernel = pick_kernel("auto", query.device, query.dtype, dropout)
    if windowed:
        kernel = "sdpa-mask"
    if kernel == "varlen":
        return _varlen_attention(query, key, value, packed, scaling), None
    n_rep = query.shape[1] // key.shape[1]
    if n_rep > 1:  # grouped-query attention: share each key/value head across its query heads
        key = key.repeat_interleave(n_rep, dim=1)
        value = value.repeat_interleave(n_rep, dim=1)
    if kernel == "segments":
        out = _segments(query, key, value, packed, dropout, scaling)
    elif kernel == "flex":
        if query.device.type == "cpu" and torch.is_grad_enabled() and query.requires_grad:
            raise LimaError(
                "packed_attention=flex trains on CUDA only (FlexAttention has no CPU backward); "
                "use packed_attention=auto on a CPU"
            )
        flex = _compiled_flex() if query.device.type == "cuda" else _flex()[0]
        out = flex(query, key, value, block_mask=packed.block_mask(), scale=scaling)
    elif kernel == "sdpa-mask":
        mask = packed.dense_mask(window if windowed else None)
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling
        )
    else:
        raise ValueError(f"unknown packed attention kernel {kernel!r}; choose from {KERNELS}")
    return out.transpose(1, 2).contiguous(), None  # (B, T, H, D), as transformers expects


def register() -> str:
    """Make :data:`NAME` a valid ``attn_implementation``; returns it. Idempotent."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, packed_attention)
    return NAME

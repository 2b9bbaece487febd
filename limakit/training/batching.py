"""From examples to micro-batches: rendering, the data order, length grouping and packing.

The order of examples is a pure function of ``(seed, epoch)``, so a resumed run sees exactly the
batches an uninterrupted one would. Each optimizer step takes ``global_batch`` examples; they are
split into micro-batches either by *packing* (several examples per row, each with its own
positions and a block-diagonal causal mask, so no example sees another) or by *length grouping*
(similar lengths share a padded micro-batch). Targets are shifted per example before packing, so
the last token of one example never predicts the first token of the next.

>>> order = epoch_order(5, seed=0, epoch=0)
>>> sorted(order) == list(range(5)) and order == epoch_order(5, seed=0, epoch=0)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from limakit.records.template import IGNORE
from limakit.training.attention import PackedRows, segment_lengths


@dataclass(frozen=True)
class Encoded:
    """One rendered example: tokens and next-token targets (already shifted, -100 = no loss), and
    the targets' loss weights, shifted alike (None: every target weighs 1)."""

    index: int
    ids: list[int]
    targets: list[int]
    weights: list[float] | None = None

    @property
    def n_trained(self) -> int:
        return sum(1 for t in self.targets if t != IGNORE)

    @property
    def weight(self) -> float:
        """The example's share of the loss's denominator: its targets' summed weight."""
        if self.weights is None:
            return self.n_trained
        return sum(self.weights)

    def __len__(self) -> int:
        return len(self.ids)


def shift_labels(labels: list[int]) -> list[int]:
    """Targets aligned with the inputs: position t predicts labels[t + 1]; the last predicts nothing.

    >>> shift_labels([-100, 5, 6])
    [5, 6, -100]
    """
    return list(labels[1:]) + [IGNORE]


def encoded(index: int, rendered) -> Encoded:
    """A :class:`~limakit.records.template.Rendered` example as shifted targets and weights; the
    weights are kept only when some trained token weighs other than 1 (a prompt weight).

    >>> from limakit.records.template import Rendered
    >>> encoded(0, Rendered([1, 2, 3], [-100, 2, 3], [0.0, 0.5, 1.0])).weights
    [0.5, 1.0, 0.0]
    """
    weights = list(rendered.weights[1:]) + [0.0]
    plain = all(w == 1.0 for w in weights if w)
    return Encoded(
        index, rendered.input_ids, shift_labels(rendered.labels), None if plain else weights
    )


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """A permutation of ``range(n)`` that depends only on the seed and the epoch."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def step_groups(order: list[int], global_batch: int) -> list[list[int]]:
    """Consecutive groups of ``global_batch`` example indices: one per optimizer step (last may be short)."""
    return [order[i : i + global_batch] for i in range(0, len(order), global_batch)]


def pack_rows(items: list[Encoded], capacity: int) -> list[list[Encoded]]:
    """First-fit-decreasing bin packing of examples into rows of at most ``capacity`` tokens.

    >>> e = [Encoded(i, [0] * n, [0] * n) for i, n in enumerate([6, 3, 4, 2])]
    >>> [[x.index for x in row] for row in pack_rows(e, 8)]
    [[0, 3], [2, 1]]
    """
    rows: list[list[Encoded]] = []
    free: list[int] = []
    for item in sorted(items, key=lambda x: (-len(x), x.index)):
        for r, room in enumerate(free):
            if len(item) <= room:
                rows[r].append(item)
                free[r] -= len(item)
                break
        else:
            rows.append([item])
            free.append(capacity - len(item))
    return rows


def plan_micro_batches(
    items: list[Encoded], micro_batch: int, max_len: int, packing: bool
) -> list[list[list[Encoded]]]:
    """Micro-batches (lists of rows, each a list of examples) for one optimizer step.

    Rows are sorted by length before being cut into micro-batches of ``micro_batch`` rows, so the
    padding added to reach the longest row of each micro-batch stays small (length grouping).
    """
    rows = pack_rows(items, max_len) if packing else [[x] for x in items]
    rows.sort(key=lambda row: (-sum(len(x) for x in row), row[0].index))
    return [rows[i : i + micro_batch] for i in range(0, len(rows), micro_batch)]


def collate(
    rows: list[list[Encoded]], pad_id: int, *, with_mask: bool = True
) -> dict[str, torch.Tensor | None | int]:
    """Tensors for one micro-batch.

    Built on the host (then moved once by :func:`to_device`). Returns ``input_ids``, ``targets``,
    ``position_ids`` (B, T), ``target_index`` (the flat positions with a target, so the loss
    selects them without a device-to-host sync), ``target_weight`` (the loss weight of each of
    those targets, or None when every one weighs 1) and ``attention_mask``: a boolean
    (B, 1, T, T) block-diagonal causal mask (True = may attend), or None when every row holds one
    example (plain causal attention is then exact and faster: padding only ever follows). Padding forms its own
    segment that only sees itself, so no softmax row is empty. With ``with_mask=False`` the mask is
    left to the attention kernel, which reads the example boundaries from the position ids
    (flash-attention varlen).
    """
    T = max(sum(len(x) for x in row) for row in rows)
    B = len(rows)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    targets = torch.full((B, T), IGNORE, dtype=torch.long)
    pos = torch.zeros((B, T), dtype=torch.long)
    weighted = any(x.weights is not None for row in rows for x in row)
    weights = torch.ones((B, T), dtype=torch.float32) if weighted else None
    n_real = 0
    for b, row in enumerate(rows):
        t = 0
        for x in row:
            n = len(x)
            ids[b, t : t + n] = torch.tensor(x.ids)
            targets[b, t : t + n] = torch.tensor(x.targets)
            if weights is not None and x.weights is not None:
                weights[b, t : t + n] = torch.tensor(x.weights, dtype=torch.float32)
            pos[b, t : t + n] = torch.arange(n)
            t += n
        n_real += t
        pos[b, t:] = torch.arange(T - t)  # padding counts as one more sequence
    # One example per row: right padding is harmless under plain causal attention (real tokens
    # never look ahead at it, and padding has no target), so the fast is_causal kernel is exact.
    simple = all(len(row) == 1 for row in rows)
    segments = segment_lengths([[len(x) for x in row] for row in rows], T)
    mask = None
    if with_mask and not simple:
        mask = PackedRows(segments, torch.device("cpu")).dense_mask()  # (B, 1, T, T)
    target_index = (targets.reshape(-1) != IGNORE).nonzero().squeeze(1)
    n_trained = int(target_index.numel())
    target_weight = None if weights is None else weights.reshape(-1)[target_index]  # (N,)
    return {
        "segments": segments,
        "input_ids": ids,
        "targets": targets,
        "target_index": target_index,
        "target_weight": target_weight,
        "position_ids": pos,
        "attention_mask": mask,
        "n_real": n_real,
        "n_tokens": B * T,
        "n_trained": n_trained,
    }


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on ``device`` (pinned, non-blocking on CUDA); other entries as they are."""
    from limakit.models import host_to_device

    return {
        k: host_to_device(v, device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }

"""The decode loop's KV cache and attention windows.

:class:`SlotCache` holds one row per running sequence (its keys at positions ``0..len-1``, no
left padding), grown as sequences lengthen; each decode step writes every row's new key at that
row's own position. :func:`sliding_window` reads from a model's config which layers attend to
a window of recent keys only, so the decode mask can show each layer what it saw in training.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


def sliding_window(config) -> tuple[int | None, bool]:
    """A model's attention window from its config's ``layer_types``: ``(window, only)``, where
    ``only`` says every layer is a sliding-window one (one mask serves them all); ``(None,
    False)`` when no layer slides. Gemma 3, for one, mixes local layers that see the last 512
    keys with global ones: a decode mask that ignored the window would show its local layers
    keys they never saw in training, and answers to prompts past the window turn to noise."""
    config = getattr(config, "get_text_config", lambda: config)()
    types = set(getattr(config, "layer_types", None) or ())
    window = getattr(config, "sliding_window", None)
    if "sliding_attention" not in types or not window:
        return None, False
    return int(window), types == {"sliding_attention"}


class _SlotLayer(DynamicLayer):
    """One layer's KV buffers; ``update`` writes the step's keys at each row's own position."""

    def __init__(self, pool: SlotCache):
        super().__init__()
        self.pool = pool
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        p = self.pool
        n = key_states.shape[0]
        # Advanced indices (rows, positions) around a slice: the target is (n, heads, head_dim).
        self.keys[p.rows[:n], :, p.write_pos] = key_states[:, :, 0]
        self.values[p.rows[:n], :, p.write_pos] = value_states[:, :, 0]
        return self.keys[:n, :, : p.span], self.values[:n, :, : p.span]

    def get_seq_length(self) -> int:
        return self.pool.span - 1

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.pool.span, 0


class SlotCache(Cache):
    """The pool's KV cache: ``max_batch`` rows, capacity grown as sequences lengthen."""

    def __init__(
        self,
        n_layers: int,
        max_batch: int,
        heads: int,
        head_dim: int,
        dtype,
        capacity=256,
        device: torch.device | str = "cpu",
    ):
        super().__init__(layers=[_SlotLayer(self) for _ in range(n_layers)])
        self.max_batch, self.heads, self.head_dim, self.dtype = max_batch, heads, head_dim, dtype
        self.device = torch.device(device)
        self.capacity = 0
        self.rows = torch.arange(max_batch, device=self.device)
        self.write_pos = torch.zeros(0, dtype=torch.long, device=self.device)
        self.span = 0
        self.reserve(capacity)

    def reserve(self, length: int) -> None:
        if length <= self.capacity:
            return
        # Grow by a quarter (plus a margin): doubling would waste up to half of a large cache.
        new_cap = max(length + 128, self.capacity + self.capacity // 4)
        shape = (self.max_batch, self.heads, new_cap, self.head_dim)
        for layer in self.layers:
            for name in ("keys", "values"):
                new = torch.zeros(shape, dtype=self.dtype, device=self.device)
                old = getattr(layer, name, None)
                if old is not None and self.capacity:
                    new[:, :, : self.capacity] = old
                setattr(layer, name, new)
        self.capacity = new_cap

    def load_row(self, row: int, prefill: DynamicCache, index: int, length: int) -> None:
        """Copy the first ``length`` positions of sequence ``index`` of a prefill cache into ``row``."""
        self.reserve(length + 1)
        for mine, theirs in zip(self.layers, prefill.layers):
            mine.keys[row, :, :length] = theirs.keys[index, :, :length]
            mine.values[row, :, :length] = theirs.values[index, :, :length]

    def move_row(self, src: int, dst: int, length: int) -> None:
        for layer in self.layers:
            layer.keys[dst, :, :length] = layer.keys[src, :, :length]
            layer.values[dst, :, :length] = layer.values[src, :, :length]

"""Decode steps at fixed shapes, captured once as CUDA graphs and replayed.

An eager decode step of a 1-2B model spends most of its time launching kernels from Python:
hundreds of small kernels per step, each a few microseconds of GPU work. A CUDA graph records
the whole step once and replays it with one launch. A graph fixes every shape and address, so
the engine's decode step is run here at fixed shapes:

- rows: the active rows ``0..n-1`` padded up to the next power of two (at most ``max_batch``);
  a padding row feeds the pad token at position 0 of its own free slot and sees only that
  position, so it never touches a live sequence;
- span: the cached positions attended to, rounded up to a multiple of ``span_step``;
- inputs: token ids and positions are copied into buffers allocated once, which the graphs read.

One graph is captured per (rows, span) shape the first time it is needed. When the KV cache grows
(its buffers move), the graphs are dropped and captured again. On a device without CUDA the same
fixed-shape steps run eagerly: that is what the tests check against the dynamic steps.

If a model cannot be captured (an operation in its forward pass waits for the host), the engine
warns once and goes on with eager fixed-shape steps.
"""

from __future__ import annotations

import warnings

import torch

from limakit.models import host_to_device


def bucket(n: int, limit: int) -> int:
    """The smallest power of two >= ``n``, but never more than ``limit``.

    >>> [bucket(n, 48) for n in (1, 3, 8, 9, 33, 48)]
    [1, 4, 8, 16, 48, 48]
    """
    return min(1 << max(n - 1, 0).bit_length(), limit)


class StaticDecode:
    """Runs an :class:`Engine`'s decode step at fixed shapes, as CUDA graphs where it can."""

    span_step = 256

    def __init__(self, engine):  # a limakit.generation.engine.Engine (which imports this module)
        self.engine = engine
        device = engine.device
        self.ids = torch.zeros(engine.max_batch, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(engine.max_batch, dtype=torch.long, device=device)
        self.use_graphs = device.type == "cuda"
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.captured_capacity = -1  # the cache capacity the graphs point into
        self.pool = None
        self.captures = 0  # graphs captured so far (they are dropped when the cache grows)

    def step(self, ids: list[int], lens: list[int]) -> torch.Tensor:
        """Logits ``(len(ids), vocab)`` for the next token of rows ``0..len(ids)-1``."""
        e = self.engine
        n = len(ids)
        rows = bucket(n, e.max_batch)
        span = -(-(max(lens) + 1) // self.span_step) * self.span_step
        e.cache.reserve(span)
        if e.cache.capacity != self.captured_capacity:  # the buffers moved: graphs are stale
            self.graphs.clear()
            self.pool = None
            self.captured_capacity = e.cache.capacity
        pad = rows - n
        staged = host_to_device([ids + [e.pad_id] * pad, lens + [0] * pad], e.device, torch.long)
        self.ids[:rows, 0].copy_(staged[0], non_blocking=True)
        self.pos[:rows].copy_(staged[1], non_blocking=True)
        if not self.use_graphs:
            return self._forward(rows, span)[:n]
        entry = self.graphs.get((rows, span))
        if entry is None:
            return self._capture(rows, span)[:n]
        graph, logits = entry
        graph.replay()
        return logits[:n]

    def _forward(self, rows: int, span: int) -> torch.Tensor:
        return self.engine.decode_forward(self.ids[:rows], self.pos[:rows], span)

    def _capture(self, rows: int, span: int) -> torch.Tensor:
        """Capture the step for this shape and replay it: this step's logits (the graph's buffer).

        Capturing runs nothing; the warm-up before it runs the step once for real. The warm-up
        and the replay write the same keys and values at the same positions, so running the step
        twice changes nothing.
        """
        try:
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            graph, recorded = self._record(lambda: self._forward(rows, span))
        except RuntimeError as err:
            self.use_graphs = False
            self.graphs.clear()
            warnings.warn(
                f"decode steps run without CUDA graphs: capturing one failed ({err})",
                RuntimeWarning,
                stacklevel=2,
            )
            return self._forward(rows, span)
        self.graphs[(rows, span)] = (graph, recorded)
        self.captures += 1
        graph.replay()
        return recorded

    def _record(self, fn):
        """Warm ``fn`` up on a side stream, then capture it: (graph, the output it writes)."""
        device = self.engine.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # kernels chosen and workspaces made outside the capture
            fn()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (a server's) may use CUDA while this one captures.
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            out = fn()
        return graph, out

"""A continuous-batching decode loop over a Hugging Face causal LM, with a slot KV cache.

The engine keeps a pool of at most ``max_batch`` active sequences. Each decode step runs the model
once on the last token of every active sequence. A sequence that stops (EOT, length, cancelled)
leaves the pool at once, and waiting prompts take the free slots, the waiting requests taking
turns (:mod:`limakit.generation.admission`). On an accelerator they are
prefilled together, right-padded, in chunks of at most ``prefill_tokens`` padded tokens; on a CPU
each alone (no padding, the fast causal kernel). Finished rows cost nothing.

Log-probabilities are recorded only for requests that ask (``logprobs``, ``prompt_logprobs``): they
are the model's own distribution, the log-softmax of its raw logits, before the repetition penalty,
temperature and top-p reshape it for sampling. A batch where nobody asks computes nothing extra.
A request that asks for prompt log-probabilities is prefilled alone, with logits at every position.

Everything lives on the model's device: the KV cache, token ids, masks, the ``seen`` matrix and the
sampler. The host keeps a mirror of each row's length, so a step waits for the device only when it
reads the sampled token ids. On CUDA the decode step runs at fixed shapes and is replayed as a CUDA
graph (``limakit.generation.graphs``; ``cuda_graphs=False`` turns that off).

KV layout: per layer one preallocated buffer ``(max_batch, kv_heads, capacity, head_dim)``. Row
``r`` holds its sequence's keys at positions ``0..len[r]-1`` (no left padding); each step writes the
new key at ``len[r]`` and the 4-D additive mask hides everything after it, so rows of different
lengths share one forward pass. Positions (for RoPE) are per-row. (Sliding-window layers, as in
Gemma 3, see the full history in decode steps: exact only up to their window.) Writing in place avoids the
per-step ``torch.cat`` of a growing cache, which at batch 16 would copy the whole cache every token.

>>> engine = Engine(load_model_for("smollm2-135m"))  # doctest: +SKIP
>>> req = Request(prompt_ids=[...], max_new_tokens=64)  # doctest: +SKIP
>>> engine.run([req]); tokenizer.decode(req.output_ids)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicCache

from limakit.generation.admission import FairQueue
from limakit.generation.graphs import StaticDecode
from limakit.generation.kv_cache import SlotCache, sliding_window
from limakit.generation.logprobs import TokenLogprob, score_tokens
from limakit.generation.sampler import sample_next
from limakit.models import LoadedModel, host_to_device


def forward_last(model, seqs: list[list[int]], pad_id: int, *, every_position=False, **kwargs):
    """One forward pass over ``seqs`` right-padded; returns (output, logits at each last token).

    The logits are computed only at the positions some sequence ends at (``logits_to_keep``), so
    a batch costs one vocabulary projection per sequence, not per token. Padding comes after
    each sequence, so under causal attention its tokens never change the real ones.
    ``every_position`` (one sequence only) keeps the logits at every position in ``output``.
    """
    lengths = [len(s) for s in seqs]
    n, width = len(seqs), max(lengths)
    device = next(model.parameters()).device
    ids = host_to_device([s + [pad_id] * (width - len(s)) for s in seqs], device, torch.long)
    if n == 1:
        out = model(input_ids=ids, logits_to_keep=0 if every_position else 1, **kwargs)
        return out, out.logits[:, -1]
    if every_position:
        raise ValueError("logits at every position are kept for one sequence at a time")
    last = sorted({x - 1 for x in lengths})  # the positions whose logits are needed
    mask = host_to_device([[1] * x + [0] * (width - x) for x in lengths], device, torch.long)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        logits_to_keep=host_to_device(last, device, torch.long),
        **kwargs,
    )
    col = host_to_device([last.index(x - 1) for x in lengths], device, torch.long)
    return out, out.logits[torch.arange(n, device=device), col]


@dataclass
class Request:
    """One sequence to generate. ``on_token(req, token_id)`` is called from the engine's thread;
    it may end the sequence at that token by setting ``finish_reason`` (a stop found in the text).

    ``logprobs`` (None: not recorded) records in ``token_logprobs`` each new token's
    log-probability and that many most likely alternatives (one per output id, then one for the
    stop token, ``end_token``, when the sequence ended at one); ``prompt_logprobs`` does the same
    in ``prompt_token_logprobs`` for every prompt token but the first (which has no context).
    ``admitted`` is the ``time.monotonic()`` at which the engine gave the request a batch slot.
    The sequences of one ``group`` (a client's request) take turns for slots with other groups'
    (:mod:`limakit.generation.admission`).
    """

    prompt_ids: list[int]
    max_new_tokens: int = 2048
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.2
    generator: torch.Generator | None = None
    on_token: Callable[[Request, int], None] | None = None
    on_finish: Callable[[Request], None] | None = None
    tag: object = None
    output_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "eot" | "marker" | "length" | "cancelled" | "error..."
    end_token: int | None = None  # the stop token the sequence ended at (not in output_ids)
    group: object = None
    cancelled: bool = False  # set from any thread; the engine drops the row at its next step
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    token_logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_token_logprobs: list[TokenLogprob] = field(default_factory=list)
    admitted: float | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


class Engine:
    """Continuous batching: ``add`` requests (any thread), then ``run`` or call ``step`` in a loop."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch: int = 16,
        eot_id: int | None = None,
        prefill_tokens: int | None = None,
        cuda_graphs: bool | None = None,
        stop_ids: Iterable[int] = (),
        marker_ids: Iterable[int] = (),
    ):
        """``loaded``: the model with its device, dtype and EOT decided (``load_model_for``, or
        ``LoadedModel.of`` for a model already in memory). ``eot_id`` and ``stop_ids`` replace
        and extend where answers stop (a model sampled in its own chat format stops at its own
        end-of-turn tokens); ``marker_ids`` (a chat template's other control tokens, such as a
        role header) end an answer too, as ``"marker"``."""
        model = loaded.model
        self.loaded = loaded
        self.model = model.eval()
        self.tokenizer = tokenizer = loaded.tokenizer
        self.max_batch = max_batch
        self.device = loaded.device
        # Padded tokens per batched prefill (at least one prompt). On a CPU each prompt is
        # prefilled alone: a padded batch needs a dense mask, which takes CPU attention off its
        # fast causal kernel, and long prompts keep the matmuls busy anyway.
        if prefill_tokens is None:
            prefill_tokens = 1 if self.device.type == "cpu" else 8192
        self.prefill_tokens = prefill_tokens
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # transformers 5.x names the cache argument `cache` (`past_key_values` goes in 5.40).
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        eot_id = loaded.eot_id if eot_id is None else eot_id
        if eot_id is None:
            raise ValueError("the engine needs an end-of-turn id: load a template or pass eot_id")
        self.eot_id = int(eot_id)
        # Every token that ends an answer: the EOT, and the end-of-turn and EOS ids of a model
        # sampled in its own chat format. Checked on the host, after the step's one device read.
        self.marker_ids = frozenset(int(i) for i in marker_ids)
        self.stop_ids = frozenset({self.eot_id, *(int(i) for i in stop_ids)}) | self.marker_ids
        self.vocab = model.get_output_embeddings().weight.shape[0]
        self.window, self.window_only = sliding_window(model.config)
        self.dtype = loaded.dtype
        self.waiting: FairQueue[Request] = FairQueue()  # the requests' groups take turns
        self.active: list[Request] = []
        self.lens = [0] * max_batch  # tokens cached per row, on the host: no device read per step
        self.seen = torch.zeros(max_batch, self.vocab, dtype=torch.bool, device=self.device)
        self.cache: SlotCache | None = None
        self.lock = threading.Lock()
        self.wakeup = threading.Event()
        self.generated = 0  # tokens produced since creation (for throughput displays)
        # Fixed-shape decode steps, replayed as CUDA graphs (limakit.generation.graphs). By default
        # on CUDA only: on a CPU the padding costs more than the launches it saves. True on a
        # device without CUDA runs the same fixed-shape steps eagerly.
        if cuda_graphs is None:
            cuda_graphs = self.device.type == "cuda"
        self.static = StaticDecode(self) if cuda_graphs else None

    # -- queue -----------------------------------------------------------------------------------
    def add(self, req: Request) -> Request:
        with self.lock:
            self.waiting.push(req, req.group)
        self.wakeup.set()
        return req

    @property
    def busy(self) -> bool:
        return bool(self.active or self.waiting)

    def run(self, requests: list[Request] | None = None) -> None:
        """Add ``requests`` and step until nothing is left."""
        for r in requests or []:
            self.add(r)
        while self.busy:
            self.step()

    def fail_all(self, reason: str) -> None:
        """Finish every queued and active sequence with ``reason`` (after an error in a step)."""
        with self.lock:
            pending = self.waiting.drain()
        rows, self.active = self.active, []
        for req in rows + pending:
            req.finish_reason = reason
            if req.on_finish:
                req.on_finish(req)

    # -- one iteration -----------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> None:
        """Admit waiting prompts into free slots (prefilled together), then one decode step."""
        admitted: list[Request] = []
        scored: list[Request] = []  # no new tokens, only the prompt's log-probabilities
        while len(self.active) + len(admitted) < self.max_batch:
            with self.lock:
                req = self.waiting.pop()
            if req is None:
                break
            req.admitted = time.monotonic()
            if req.cancelled:
                self._finish_unadmitted(req, "cancelled")
            elif req.max_new_tokens <= 0:
                if req.prompt_logprobs is None:
                    self._finish_unadmitted(req, "length")
                else:
                    scored.append(req)
            else:
                admitted.append(req)
        try:
            for req in scored:
                self._score_prompt(req)
                self._finish_unadmitted(req, "length")
            chunk: list[Request] = []
            for req in admitted:  # chunks of at most prefill_tokens padded tokens
                if req.prompt_logprobs is not None:  # prefilled alone, logits everywhere
                    self._prefill([req])
                    continue
                longest = max([len(r.prompt_ids) for r in chunk] + [len(req.prompt_ids)])
                if chunk and longest * (len(chunk) + 1) > self.prefill_tokens:
                    self._prefill(chunk)
                    chunk = []
                chunk.append(req)
            if chunk:
                self._prefill(chunk)
            if self.active:
                self._decode()
        except BaseException:
            # Prompts taken from the queue but not yet in a slot go back, so that ``fail_all``
            # finishes them too: nobody waits forever for a sequence the engine forgot.
            active = {id(r) for r in self.active}
            lost = [r for r in scored + admitted if id(r) not in active and not r.done]
            with self.lock:
                self.waiting.push_back([(r, r.group) for r in lost])
            raise

    def _finish_unadmitted(self, req: Request, reason: str) -> None:
        req.finish_reason = reason
        if req.on_finish:
            req.on_finish(req)

    def _score_prompt(self, req: Request, logits: torch.Tensor | None = None) -> None:
        """Record the prompt's log-probabilities; ``logits`` (positions, vocab) if already known."""
        ids = req.prompt_ids
        if logits is None:
            out, _ = forward_last(
                self.model, [ids], self.pad_id, every_position=True, use_cache=False
            )
            logits = out.logits[0]
        if len(ids) < 2:
            return
        targets = host_to_device(ids[1:], self.device, torch.long)
        rows = 1024  # bounds the float32 copy made for the log-softmax
        for start in range(0, len(ids) - 1, rows):
            end = min(start + rows, len(ids) - 1)
            req.prompt_token_logprobs += score_tokens(
                logits[start:end], targets[start:end], req.prompt_logprobs or 0
            )

    def _prefill(self, reqs: list[Request]) -> None:
        """One forward pass over ``reqs``' prompts, right-padded; each takes a free slot."""
        lengths = [len(r.prompt_ids) for r in reqs]
        past = DynamicCache()  # plain full-attention layers: the whole prompt's keys are kept
        every_position = reqs[0].prompt_logprobs is not None
        out, logits = forward_last(
            self.model,
            [r.prompt_ids for r in reqs],
            self.pad_id,
            every_position=every_position,
            use_cache=True,
            **{self.cache_arg: past},
        )
        if every_position:
            self._score_prompt(reqs[0], out.logits[0])
            logits = logits.clone()  # not a view that keeps every position's logits alive
        del out
        if self.cache is None:
            k = past.layers[0].keys
            self.cache = SlotCache(
                len(past.layers),
                self.max_batch,
                k.shape[1],
                k.shape[3],
                k.dtype,
                device=self.device,
            )
        rows = []
        for b, req in enumerate(reqs):
            row = len(self.active)
            self.cache.load_row(row, past, b, lengths[b])
            self.lens[row] = lengths[b]
            self.seen[row] = False
            self.active.append(req)
            rows.append(row)
        self._emit(logits, rows)

    def _decode(self) -> None:
        n = len(self.active)
        ids = [r.output_ids[-1] for r in self.active]
        lens = self.lens[:n]
        if self.static is not None:
            logits = self.static.step(ids, lens)
        else:
            span = max(lens) + 1
            self.cache.reserve(span)
            staged = host_to_device([ids, lens], self.device, torch.long)
            logits = self.decode_forward(staged[0][:, None], staged[1], span)
        for r in range(n):
            self.lens[r] += 1
        self._emit(logits, list(range(n)))

    def decode_forward(self, ids: torch.Tensor, pos: torch.Tensor, span: int) -> torch.Tensor:
        """One decode step of cache rows ``0..len(ids)-1``: next-token logits ``(rows, vocab)``.

        Row ``r`` feeds token ``ids[r, 0]`` at position ``pos[r]``, writes its key there and
        attends to positions ``0..pos[r]`` of the first ``span`` cached positions. Nothing here
        reads the device from the host, so the step can be captured as a CUDA graph.
        """
        cache = self.cache
        cache.write_pos, cache.span = pos, span
        at = torch.arange(span, device=self.device)[None, :]
        visible = at <= pos[:, None]  # own + new
        mask: torch.Tensor | dict[str, torch.Tensor] = self._additive(visible)
        if self.window is not None:  # sliding-window layers see only the last `window` keys
            near = self._additive(visible & (at > pos[:, None] - self.window))
            mask = near if self.window_only else {"full_attention": mask, "sliding_attention": near}
        out = self.model(
            input_ids=ids,
            position_ids=pos[:, None],
            attention_mask=mask,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_arg: cache},
        )
        return out.logits[:, -1]

    def _additive(self, visible: torch.Tensor) -> torch.Tensor:
        """A (rows, 1, 1, span) additive mask: 0 where ``visible``, the dtype's minimum elsewhere."""
        mask = torch.zeros(visible.shape[0], 1, 1, visible.shape[1], dtype=self.dtype,
                           device=self.device)  # fmt: skip
        return mask.masked_fill_(~visible[:, None, None, :], torch.finfo(self.dtype).min)

    def _emit(self, logits: torch.Tensor, rows: list[int]) -> None:
        """Sample one token for ``rows`` (logits in the same order), record it, retire finished rows."""
        reqs = [self.active[r] for r in rows]
        dev = self.device
        idx = host_to_device(rows, dev, torch.long)
        settings = host_to_device(
            [[r.temperature, r.top_p, r.repetition_penalty] for r in reqs], dev, torch.float32
        )
        sampled = sample_next(
            logits,
            self.seen[idx],
            settings[:, 0],
            settings[:, 1],
            settings[:, 2],
            [r.generator for r in reqs],
            all_greedy=all(r.temperature <= 0 for r in reqs),
        )
        self.seen[idx, sampled] = True
        asking = [j for j, r in enumerate(reqs) if r.logprobs is not None]
        scores: dict[int, TokenLogprob] = {}
        if asking:  # only then: a batch where nobody asks pays nothing
            pick = host_to_device(asking, dev, torch.long)
            k = max(reqs[j].logprobs for j in asking)
            for j, s in zip(asking, score_tokens(logits[pick], sampled[pick], k)):
                scores[j] = TokenLogprob(s.logprob, s.top[: reqs[j].logprobs])
        tokens = sampled.tolist()  # the step's one wait for the device
        finished = []
        for j, (row, req, tok) in enumerate(zip(rows, reqs, tokens)):
            if req.cancelled:
                req.finish_reason = "cancelled"
            elif tok in self.stop_ids:  # the EOT (or a marker) is not part of the answer
                req.finish_reason = "marker" if tok in self.marker_ids else "eot"
                req.end_token = tok
                if j in scores:  # but its log-probability is recorded
                    req.token_logprobs.append(scores[j])
            else:
                req.output_ids.append(tok)
                if j in scores:
                    req.token_logprobs.append(scores[j])
                self.generated += 1
                if req.on_token:
                    req.on_token(req, tok)
                if not req.done and len(req.output_ids) >= req.max_new_tokens:
                    req.finish_reason = "length"
            if req.done:
                finished.append(row)
        # Retire from the highest row down, moving the last active row into each hole.
        for row in sorted(finished, reverse=True):
            req = self.active[row]
            last = len(self.active) - 1
            if row != last:
                self.cache.move_row(last, row, self.lens[last])
                self.lens[row] = self.lens[last]
                self.seen[row] = self.seen[last]
                self.active[row] = self.active[last]
            self.active.pop()
            if req.on_finish:
                req.on_finish(req)

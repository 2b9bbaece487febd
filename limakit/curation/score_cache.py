"""On-disk cache of per-example embeddings and scores, keyed by content hash and scorer.

A scorer is named by a string holding everything that changes its output (model, token limit,
dtype, prompt version...); an example by the hash of its messages. A second curation of the same
pool, with another budget or another selector, reuses every vector and score already computed;
an edited example gets a new hash and is scored again. Rows are committed batch by batch, so a
run killed midway keeps what it finished.

>>> c = ScoreCache(":memory:")
>>> c.put_scores("len", ["k1"], np.array([3.0]))
>>> c.get_scores("len", ["k1", "k2"]).tolist()
[3.0, nan]
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from limakit.core.files import open_sqlite
from limakit.records.example import Example

_CHUNK = 900  # SQLite's default limit on query parameters is 999


def content_hash(ex: Example) -> str:
    """A hash of the conversation's roles and texts (not its id, source or meta)."""
    h = hashlib.sha256()
    for m in ex.messages:
        h.update(m.role.encode() + b"\0" + m.content.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:32]


def default_cache_path() -> Path:
    from limakit.models import limakit_home

    return limakit_home() / "cache" / "selection.sqlite"


SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (scorer TEXT, key TEXT, dim INTEGER, value BLOB,
                                    PRIMARY KEY (scorer, key));
CREATE TABLE IF NOT EXISTS scores (scorer TEXT, key TEXT, value REAL, PRIMARY KEY (scorer, key));
"""


def _positions(keys: Sequence[str]) -> dict[str, list[int]]:
    """Each key's positions: identical conversations share one stored row."""
    where: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        where.setdefault(k, []).append(i)
    return where


class ScoreCache:
    def __init__(self, path: str | os.PathLike) -> None:
        self.db = open_sqlite(path, SCHEMA)

    def _rows(self, table: str, cols: str, scorer: str, keys: Sequence[str]):
        for s in range(0, len(keys), _CHUNK):
            part = list(keys[s : s + _CHUNK])
            marks = ",".join("?" * len(part))
            yield from self.db.execute(
                f"SELECT key, {cols} FROM {table} WHERE scorer = ? AND key IN ({marks})",
                [scorer, *part],
            )

    def get_vectors(
        self, scorer: str, keys: Sequence[str], dim: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (n, dim) float32, found (n,) bool); rows not found are zeros."""
        where = _positions(keys)
        out = np.zeros((len(keys), dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        for key, d, blob in self._rows("vectors", "dim, value", scorer, keys):
            if d != dim:
                continue  # another model under the same name: recompute
            out[where[key]] = np.frombuffer(blob, dtype=np.float16)
            found[where[key]] = True
        return out, found

    def put_vectors(self, scorer: str, keys: Sequence[str], vectors: np.ndarray) -> None:
        v16 = np.asarray(vectors, dtype=np.float16)
        self.db.executemany(
            "INSERT OR REPLACE INTO vectors (scorer, key, dim, value) VALUES (?, ?, ?, ?)",
            [(scorer, k, v16.shape[1], v16[i].tobytes()) for i, k in enumerate(keys)],
        )
        self.db.commit()

    def get_scores(self, scorer: str, keys: Sequence[str]) -> np.ndarray:
        """(n,) float64; NaN where no score is stored."""
        where = _positions(keys)
        out = np.full(len(keys), np.nan)
        for key, value in self._rows("scores", "value", scorer, keys):
            out[where[key]] = np.nan if value is None else value
        return out

    def put_scores(self, scorer: str, keys: Sequence[str], values: Sequence[float]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO scores (scorer, key, value) VALUES (?, ?, ?)",
            [(scorer, k, float(v)) for k, v in zip(keys, values)],
        )
        self.db.commit()

    def close(self) -> None:
        self.db.close()

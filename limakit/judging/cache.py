"""SQLite cache of judge replies, keyed by judge model, prompt version and the exact inputs.

Each reply is committed as soon as it arrives, so a rerun makes zero calls and a run killed midway
repeats only the calls that were in flight.

>>> c = JudgeCache(":memory:")
>>> k = cache_key({"model": "m", "prompt": "lima-pair-v1@ab12", "messages": []})
>>> c.get(k) is None
True
>>> c.put(k, {"text": "[[A]]"}); c.get(k)["text"]
'[[A]]'
"""

from __future__ import annotations

import hashlib
import json
import os

from limakit.core.files import open_sqlite


def cache_key(parts: dict) -> str:
    """A stable hash of everything that determines a judge's reply."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


class JudgeCache:
    def __init__(self, path: str | os.PathLike) -> None:
        # The local judge may run in a worker thread; writes are serial.
        self.db = open_sqlite(
            path, "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        )

    def get(self, key: str) -> dict | None:
        row = self.db.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO replies (key, value) VALUES (?, ?)",
            (key, json.dumps(value, ensure_ascii=False)),
        )
        self.db.commit()

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        self.db.close()

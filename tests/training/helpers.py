"""Small fixtures for trainer tests: a data file of short conversations."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()
)


def write_data(path: Path, n: int = 12, seed: int = 0) -> Path:
    """``n`` short user/assistant pairs of varied lengths, in limakit JSONL."""
    rows = []
    for i in range(n):
        k = (i * 7 + seed) % 11
        q = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(3 + k % 4))
        a = " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(4 + k))
        rows.append(
            {
                "id": f"ex{i}",
                "source": "test",
                "messages": [
                    {"role": "user", "content": q},
                    {"role": "assistant", "content": a},
                ],
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path

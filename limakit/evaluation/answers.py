"""Answer files as the judges read them: keyed by (prompt id, sample), with category and model."""

from __future__ import annotations

import os
from pathlib import Path

from limakit.core.errors import LimaError
from limakit.records.example import Example


def sample_of(ex: Example) -> int:
    try:
        return int(ex.meta.get("sample", 0) or 0)
    except (TypeError, ValueError):
        return 0


def category_of(ex: Example) -> str:
    return str(ex.meta.get("category") or ex.source or "unknown")


def read_answers(path: str | os.PathLike) -> dict[tuple[str, int], Example]:
    """Answers keyed by (prompt id, sample); a repeated key is an error naming the file.

    An answer may be empty, as a generated one is when the model ended its turn at once: it is
    still an answer (it ended its turn; a judge sees it as it is).
    """
    out: dict[tuple[str, int], Example] = {}
    for ex in _generated(path):
        key = (ex.id, sample_of(ex))
        if key in out:
            raise LimaError(f"{path}: id {ex.id!r} sample {key[1]} appears twice")
        out[key] = ex
    if not out:
        raise LimaError(f"{path}: no answers")
    return out


def _generated(path: str | os.PathLike):
    from limakit.core.files import read_jsonl_records
    from limakit.generation.turns import answered_from_dict

    for lineno, row in read_jsonl_records(path):
        try:
            yield answered_from_dict(row)
        except ValueError as e:
            raise LimaError(f"{path}:{lineno}: {e}") from None


def model_name(answers: dict, path: str | os.PathLike) -> str:
    first = next(iter(answers.values()))
    return str(first.meta.get("model") or Path(path).stem)

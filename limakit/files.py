"""File helpers shared by every stage: atomic writes and line-numbered JSONL reading.

Every stage writes through :func:`atomic_write` so a killed run never leaves a half-written output,
and reads JSONL through :func:`read_jsonl_records` so a bad line is reported with file and line.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from limakit.errors import LimaError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file next to ``path``; rename it over ``path`` only if the block succeeds.

    >>> with atomic_write("out.jsonl") as f:  # doctest: +SKIP
    ...     f.write("{}\\n")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": encoding}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write dicts as JSON lines atomically; return the number written."""
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def append_jsonl(f: IO[str], row: dict) -> None:
    """Append one row to an open file and flush it, so a killed run loses at most this row."""
    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    f.flush()


def read_jsonl_records(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file.

    Raises :class:`LimaError` naming file and line for undecodable bytes, bad JSON or a non-object.
    A final line cut off mid-way (a killed writer) is reported the same way.
    """
    path = Path(path)
    if not path.exists():
        raise LimaError(f"{path}: file not found")
    with open(path, "rb") as f:
        yield from parse_jsonl_lines(path, f)


def parse_jsonl_lines(
    path: str | os.PathLike, lines: Iterable[bytes]
) -> Iterator[tuple[int, dict]]:
    """The JSONL rules of :func:`read_jsonl_records` over raw lines from any stream (e.g. zstd)."""
    for lineno, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise LimaError(
                f"{path}:{lineno}: not valid UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r})"
            ) from None
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise LimaError(
                f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})"
            ) from None
        if not isinstance(obj, dict):
            raise LimaError(
                f"{path}:{lineno}: each line must be a JSON object, got {type(obj).__name__}"
            )
        yield lineno, obj

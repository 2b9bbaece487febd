"""The one place where files are written and JSON/JSONL is read and written.

- :func:`atomic_write` (temp file + rename): a killed run never leaves a half-written output.
  :func:`write_jsonl` and :func:`write_json` (summaries, stage markers) go through it.
- :func:`append_jsonl` adds one row to a file that grows as work finishes (answers, metrics), so a
  kill loses at most the row in flight; :func:`read_jsonl_records` with ``resumable=True`` reads
  such a file back, leaving out a last line the kill cut short.
- :func:`read_jsonl_records` and :func:`read_json` report a bad record with file and line.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
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
            # mkstemp makes the file private (0600); an output gets the mode open() would give.
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def open_sqlite(
    path: str | os.PathLike, schema: str = "", *, durable: bool = False, **connect
) -> sqlite3.Connection:
    """An SQLite database in WAL mode (readers never wait for the writer), its folder made.

    ``durable``: every commit reaches the disk before it returns (``synchronous=FULL``), for data
    people typed; caches that can be recomputed use ``NORMAL``. Usable from any thread.
    """
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, **connect)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    if schema:
        conn.executescript(schema)
    return conn


def is_blank(path: str | os.PathLike) -> bool:
    """Whether a file holds nothing but whitespace (read until the first other byte)."""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            if chunk.strip(b" \t\r\n\x0b\x0c"):
                return False
    return True


def _umask() -> int:
    """The process umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def jsonl_line(row: dict) -> str:
    """One JSONL line (UTF-8 text kept as is, not escaped)."""
    return json.dumps(row, ensure_ascii=False) + "\n"


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write dicts as JSON lines atomically; return the number written."""
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(jsonl_line(row))
            n += 1
    return n


def append_jsonl(f: IO[str], row: dict, *, flush: bool = True) -> None:
    """Append one row to an open file; flushed, so a killed run loses at most this row.

    ``flush=False`` for logs written inside an :func:`atomic_write` block (all or nothing anyway).
    """
    f.write(jsonl_line(row))
    if flush:
        f.flush()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write one JSON document (a summary, a stage marker) atomically, indented."""
    with atomic_write(path) as f:
        f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read one JSON document; a missing or invalid file is a LimaError naming it."""
    path = Path(path)
    if not path.is_file():
        raise LimaError(f"{path}: {what} not found")
    try:
        text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise LimaError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    return parse_json(text, str(path))


OnError = Callable[[int, str, str], None]  # (line number, reason, raw text) of a bad line


def read_jsonl_records(
    path: str | os.PathLike, on_error: OnError | None = None, *, resumable: bool = False
) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file.

    Raises :class:`LimaError` naming file and line for undecodable bytes, bad JSON or a non-object.
    A final line cut off mid-way (a killed writer) is reported the same way, unless ``resumable``:
    for a file written by :func:`append_jsonl`, a last line that lacks its newline and does not
    parse is the row that was in flight when the writer was killed, and is left out (the resumed
    writer redoes it).
    With ``on_error``, a bad line is handed to it as ``(line_number, reason, raw_text)`` and
    reading goes on.
    """
    path = Path(path)
    if not path.exists():
        raise LimaError(f"{path}: file not found")
    with open(path, "rb") as f:
        yield from parse_jsonl_lines(path, f, on_error, resumable=resumable)


def parse_json(text: str | bytes, where: str) -> Any:
    """``json.loads`` whose failures are one LimaError naming ``where`` (file and record).

    Nesting deeper than Python's decoder can follow is refused the same way, not a traceback.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LimaError(
            f"{where}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})"
        ) from None
    except RecursionError:
        raise LimaError(f"{where}: {TOO_DEEP}") from None


TOO_DEEP = (
    "JSON nested too deeply (arrays/objects inside each other beyond what the reader follows)"
)


def parse_jsonl_lines(
    path: str | os.PathLike,
    lines: Iterable[bytes],
    on_error: OnError | None = None,
    *,
    resumable: bool = False,
) -> Iterator[tuple[int, dict]]:
    """The JSONL rules of :func:`read_jsonl_records` over raw lines from any stream (e.g. zstd)."""
    for lineno, raw in enumerate(lines, start=1):
        try:
            obj = _parse_line(path, lineno, raw)
        except LimaError as e:
            if resumable and not raw.endswith(b"\n"):
                return  # the row a killed writer was appending
            if on_error is None:
                raise
            on_error(
                lineno, str(e).removeprefix(f"{path}:{lineno}: "), raw.decode("utf-8", "replace")
            )
            continue
        if obj is not None:
            yield lineno, obj


def _parse_line(path: str | os.PathLike, lineno: int, raw: bytes) -> dict | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LimaError(
            f"{path}:{lineno}: not valid UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r})"
        ) from None
    if lineno == 1:
        text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise LimaError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise LimaError(f"{path}:{lineno}: {TOO_DEEP}") from None
    if not isinstance(obj, dict):
        raise LimaError(
            f"{path}:{lineno}: each line must be a JSON object, got {type(obj).__name__}"
        )
    return obj

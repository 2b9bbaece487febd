"""Stack Exchange data dumps: one folder (or ``.7z`` archive) per site holding ``Posts.xml``.

``Posts.xml`` is ``<posts><row Id= PostTypeId="1"|"2" ParentId= Score= Title= Body= .../></posts>``,
questions (type 1) and answers (type 2) interleaved; an answer can come years (gigabytes) after its
question. Reading never holds the file in memory, in two streaming passes:

1. ids and scores only: per question its score, per answer ``(parent, score, id)`` in compact
   arrays; from these each question's *top* answer is known, and the questions are ranked.
2. texts, only for the ``pool`` best-ranked questions (bounded) and their top answers.

>>> scan = scan_site("cooking.stackexchange.com/Posts.xml", pool=100)  # doctest: +SKIP
>>> scan.site, scan.questions, len(scan.pairs)  # doctest: +SKIP
('cooking', 5210, 100)
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from limakit.core.errors import LimaError
from limakit.sources.se_sites import find_sites, is_meta_site, posts_file, site_host, site_name

__all__ = [  # the site helpers live in se_sites; they are named here too, as before
    "SEPair",
    "SiteScan",
    "find_sites",
    "is_meta_site",
    "posts_file",
    "scan_site",
    "site_host",
    "site_name",
]


@dataclass
class SEPair:
    """A question with its top answer; bodies are the dump's HTML."""

    site: str
    question_id: int
    answer_id: int
    title: str
    question_html: str
    answer_html: str
    question_score: int
    answer_score: int
    accepted: bool
    tags: str = ""
    group: str = ""  # the site's group (e.g. stem/other), set by the caller


@dataclass
class SiteScan:
    """What one site yields: its size, the ranked pool of pairs, and the pairs rejected on scores."""

    site: str
    path: str
    questions: int = 0
    answers: int = 0
    pairs: list[SEPair] = field(default_factory=list)
    # (question_id, rule, reason, question_score, answer_score): decided from scores alone
    rejected: list[tuple[int, str, str, int, int | None]] = field(default_factory=list)
    eligible: int = 0
    beyond_pool: int = 0
    bytes: int = 0


def _rows(path: Path, progress=None) -> Iterator[etree._Element]:
    """Stream ``<row>`` elements, freeing each one (and its parsed siblings) after use."""
    try:
        with open(path, "rb") as f:
            # lxml reads a named file faster than a Python file object; the object is only
            # needed to report progress.
            source = f if progress is not None else str(path)
            last = 0
            for _, el in etree.iterparse(source, events=("end",), tag="row", huge_tree=True):
                yield el
                el.clear(keep_tail=False)
                parent = el.getparent()
                while el.getprevious() is not None:
                    del parent[0]
                if progress is not None:
                    pos = f.tell()
                    if pos != last:
                        progress(pos - last)
                        last = pos
    except etree.XMLSyntaxError as e:
        line, col = e.position if e.position else (0, 0)
        raise LimaError(f"{path}:{line}:{col}: malformed XML ({e.msg})") from None
    except OSError as e:
        raise LimaError(f"{path}: cannot read ({e})") from None


# The official dumps write one row per line with attributes in a fixed order (Id, PostTypeId,
# AcceptedAnswerId or ParentId, ..., Score before Body). Pass 1 needs only those numbers, so it
# reads them with one regex per chunk, about 5x faster than building elements. Any row the regex
# does not account for (other layouts, missing attributes) sends pass 1 back to the XML parser,
# which also gives the precise error; pass 2 always parses fully, so damage is never missed.
_ROW = re.compile(
    rb'<row\s+Id="(\d+)"\s+PostTypeId="(\d+)"(?:\s+AcceptedAnswerId="(\d+)")?'
    rb'(?:\s+ParentId="(\d+)")?[^>]*?\sScore="(-?\d+)"'
)
_ROW_ID = re.compile(rb'<row\s+Id="(\d+)"')
_CHUNK = 8 << 20


class _Layout(Exception):
    """The file does not follow the dump's row layout; use the XML parser."""


def _chunks(path: Path, progress=None) -> Iterator[tuple[bytes, int, int]]:
    """``(block, first_line, byte_offset)``: the file in blocks cut just before a ``<row``."""
    with open(path, "rb") as f:
        rest, line, offset = b"", 1, 0
        while True:
            data = f.read(_CHUNK)
            buf = rest + data
            if data:
                cut = buf.rfind(b"<row")
                if cut <= 0:  # no row start to cut at yet: keep reading
                    rest = buf
                    continue
                buf, rest = buf[:cut], buf[cut:]
            else:
                rest = b""
            yield buf, line, offset
            line += buf.count(b"\n")
            offset += len(buf)
            if progress is not None:
                progress(len(data))
            if not data:
                return


def _fast_ids(path: Path, progress, q_ids, q_scores, q_acc, a_parent, a_score, a_ids) -> None:
    """Pass 1 on the dump layout; also checks structure so pass 2 can skip the XML parser.

    Checks (byte counts, so they cost little): valid UTF-8, as many ``/>`` as rows, no ``<``
    besides the rows and the root's three tags, the ``<posts>`` root opened first and closed
    last. Anything else raises ``_Layout`` and the XML parser
    takes over, which reads other layouts or names the damage by line and column.
    """
    first = True
    tail = b""
    other_tags = 0
    for buf, line, offset in _chunks(path, progress):
        try:
            buf.decode("utf-8")
        except UnicodeDecodeError as e:
            where = line + buf.count(b"\n", 0, e.start)
            raise LimaError(
                f"{path}:{where}: not valid UTF-8 (byte offset {offset + e.start})"
            ) from None
        if first:
            head = buf[: buf.find(b"<row")] if b"<row" in buf else buf
            if b"<posts" not in head:
                raise _Layout
            first = False
        found = _collect(_ROW.findall(buf), q_ids, q_scores, q_acc, a_parent, a_score, a_ids)
        rows = buf.count(b"<row")
        other_tags += buf.count(b"<") - rows
        if found != rows or buf.count(b"/>") != rows or other_tags > 3:
            raise _Layout
        if buf:
            tail = (tail + buf)[-64:]
    if not tail.rstrip().endswith(b"</posts>"):
        raise _Layout  # truncated: the parser reports where


def _collect(rows: list, q_ids, q_scores, q_acc, a_parent, a_score, a_ids) -> int:
    """Append the numbers of regex-matched rows to the arrays, vectorised with numpy."""
    import numpy as np

    if not rows:
        return 0
    cols = np.array(
        rows, dtype="S20"
    )  # (rows, 5): Id, PostTypeId, AcceptedAnswerId, ParentId, Score
    cols[cols == b""] = b"-1"
    num = cols.astype(np.int64)
    kind = num[:, 1]
    q, a = num[kind == 1], num[kind == 2]
    if len(a) and (a[:, 3] < 0).any():
        raise _Layout  # an answer without ParentId: let the parser name it
    q_ids.frombytes(q[:, 0].tobytes())
    q_scores.frombytes(q[:, 4].tobytes())
    q_acc.frombytes(q[:, 2].tobytes())
    a_parent.frombytes(a[:, 3].tobytes())
    a_score.frombytes(a[:, 4].tobytes())
    a_ids.frombytes(a[:, 0].tobytes())
    return len(rows)


def _fast_texts(path: Path, wanted: set[int]) -> Iterator[etree._Element]:
    """Pass 2 on the dump layout: parse only the wanted rows (ids of chosen posts)."""
    for buf, line, _ in _chunks(path):
        for m in _ROW_ID.finditer(buf):
            if int(m.group(1)) in wanted:
                end = buf.find(b"/>", m.end()) + 2
                try:
                    yield etree.fromstring(buf[m.start() : end])
                except etree.XMLSyntaxError as e:
                    where = line + buf.count(b"\n", 0, m.start())
                    raise LimaError(f"{path}:{where}: malformed XML row ({e.msg})") from None


def _int(el: etree._Element, key: str, path: Path) -> int:
    value = el.get(key)
    if value is None:
        raise LimaError(f"{path}:{el.sourceline}: row Id={el.get('Id')} lacks attribute {key}")
    try:
        return int(value)
    except ValueError:
        raise LimaError(
            f"{path}:{el.sourceline}: row attribute {key}={value!r} is not an integer"
        ) from None


def scan_site(
    posts: str | os.PathLike,
    *,
    site: str | None = None,
    pool: int = 1000,
    min_answer_score: int = 10,
    min_question_score: int | None = 0,
    progress=None,
    on_reject=None,
) -> SiteScan:
    """Pair each question with its top answer in two streaming passes; keep the ``pool`` best.

    Questions are ranked by score (then id, for determinism). Those whose top answer's score is
    below ``min_answer_score``, whose own score is below ``min_question_score`` or that have no
    answer are recorded in ``rejected``; of the rest the ``pool`` best keep their texts.
    """
    path = Path(posts)
    if on_reject is None:

        def on_reject(*row):
            scan.rejected.append(row)

    if not path.exists():
        raise LimaError(f"{path}: Posts.xml not found")
    scan = SiteScan(site=site or site_name(path), path=str(path), bytes=path.stat().st_size)
    q_ids, q_scores, q_acc = array("q"), array("q"), array("q")
    a_parent, a_score, a_ids = array("q"), array("q"), array("q")
    try:
        _fast_ids(path, progress, q_ids, q_scores, q_acc, a_parent, a_score, a_ids)
        fast = True
    except _Layout:
        fast = False
        for arr in (q_ids, q_scores, q_acc, a_parent, a_score, a_ids):
            del arr[:]
    for el in [] if fast else _rows(path, progress):
        kind = el.get("PostTypeId")
        if kind == "1":
            q_ids.append(_int(el, "Id", path))
            q_scores.append(_int(el, "Score", path))
            acc = el.get("AcceptedAnswerId")
            q_acc.append(int(acc) if acc and acc.isdigit() else -1)
        elif kind == "2":
            a_parent.append(_int(el, "ParentId", path))
            a_score.append(_int(el, "Score", path))
            a_ids.append(_int(el, "Id", path))
    scan.questions, scan.answers = len(q_ids), len(a_ids)
    chosen = _rank(
        scan,
        q_ids,
        q_scores,
        q_acc,
        a_parent,
        a_score,
        a_ids,
        pool,
        min_answer_score,
        min_question_score,
        on_reject,
    )
    del q_ids, q_scores, q_acc, a_parent, a_score, a_ids
    want_q = {qid: i for i, (qid, _, _, _, _) in enumerate(chosen)}
    want_a = {aid: i for i, (_, aid, _, _, _) in enumerate(chosen)}
    if not chosen:
        return scan

    texts: list[dict] = [{} for _ in chosen]
    rows = _fast_texts(path, set(want_q) | set(want_a)) if fast else _rows(path, None)
    for el in rows:
        rid = el.get("Id")
        if rid is None or not rid.isdigit():
            continue
        rid_i = int(rid)
        if rid_i in want_q and el.get("PostTypeId") == "1":
            texts[want_q[rid_i]].update(
                title=el.get("Title") or "", body=el.get("Body") or "", tags=el.get("Tags") or ""
            )
        elif rid_i in want_a and el.get("PostTypeId") == "2":
            texts[want_a[rid_i]]["answer"] = el.get("Body") or ""
    for t, (qid, aid, qscore, ascore, acc) in zip(texts, chosen):
        scan.pairs.append(
            SEPair(
                site=scan.site,
                question_id=qid,
                answer_id=aid,
                title=t.get("title", ""),
                question_html=t.get("body", ""),
                answer_html=t.get("answer", ""),
                question_score=qscore,
                answer_score=ascore,
                accepted=acc,
                tags=t.get("tags", ""),
            )
        )
    return scan


def _rank(  # noqa: PLR0913 - the scan's columns as separate arrays, so memory stays small
    scan,
    q_ids,
    q_scores,
    q_acc,
    a_parent,
    a_score,
    a_ids,
    pool,
    min_answer_score,
    min_question_score,
    on_reject,
) -> list[tuple[int, int, int, int, bool]]:
    """Pick each question's top answer and rank questions, in numpy so memory stays small.

    The top answer has the highest score, then is the accepted one, then the oldest. Rejections
    go to ``on_reject(question_id, rule, reason, question_score, answer_score)`` as they are found.
    """
    import numpy as np

    qi = np.frombuffer(q_ids, dtype=np.int64) if len(q_ids) else np.zeros(0, np.int64)
    qs = np.frombuffer(q_scores, dtype=np.int64) if len(q_ids) else np.zeros(0, np.int64)
    qa = np.frombuffer(q_acc, dtype=np.int64) if len(q_ids) else np.zeros(0, np.int64)
    ap = np.frombuffer(a_parent, dtype=np.int64) if len(a_ids) else np.zeros(0, np.int64)
    ascr = np.frombuffer(a_score, dtype=np.int64) if len(a_ids) else np.zeros(0, np.int64)
    ai = np.frombuffer(a_ids, dtype=np.int64) if len(a_ids) else np.zeros(0, np.int64)
    qorder = np.argsort(qi, kind="stable")
    qi_sorted = qi[qorder]
    # Which answers are their question's accepted one.
    pos = np.clip(np.searchsorted(qi_sorted, ap), 0, max(len(qi_sorted) - 1, 0))
    is_acc = np.zeros(len(ai), dtype=np.int64)
    if len(qi_sorted):
        found = qi_sorted[pos] == ap
        is_acc = (found & (qa[qorder][pos] == ai)).astype(np.int64)
    order = np.lexsort((-ai, is_acc, ascr, ap))
    ap_o = ap[order]
    last = np.ones(len(order), dtype=bool)
    if len(order):
        last[:-1] = ap_o[1:] != ap_o[:-1]
    top_idx = order[last]  # one per parent: its top answer
    top_parent = ap[top_idx]
    # For each question: its top answer (if any).
    has = np.zeros(len(qi), dtype=bool)
    top_score = np.full(len(qi), np.iinfo(np.int64).min, dtype=np.int64)
    top_id = np.full(len(qi), -1, dtype=np.int64)
    top_acc = np.zeros(len(qi), dtype=bool)
    if len(top_parent) and len(qi):
        p2 = np.clip(np.searchsorted(qi_sorted, top_parent), 0, len(qi_sorted) - 1)
        ok = qi_sorted[p2] == top_parent
        rows = qorder[p2[ok]]
        has[rows] = True
        top_score[rows] = ascr[top_idx[ok]]
        top_id[rows] = ai[top_idx[ok]]
        top_acc[rows] = is_acc[top_idx[ok]].astype(bool)
    bad_q = (qs < min_question_score) if min_question_score is not None else np.zeros(len(qi), bool)
    bad_a = top_score < min_answer_score
    for k in np.flatnonzero(~has | bad_q | bad_a):
        qid, qscore = int(qi[k]), int(qs[k])
        if not has[k]:
            on_reject(qid, "no_answer", "the question has no answer", qscore, None)
        elif bad_q[k]:
            on_reject(
                qid,
                "question_score",
                f"question score {qscore} < {min_question_score}",
                qscore,
                int(top_score[k]),
            )
        else:
            on_reject(
                qid,
                "answer_score",
                f"top answer score {int(top_score[k])} < {min_answer_score}",
                qscore,
                int(top_score[k]),
            )
    good = np.flatnonzero(has & ~bad_q & ~bad_a)
    ranked = good[np.lexsort((qi[good], -qs[good]))]  # highest score first, then oldest
    scan.eligible = len(ranked)
    scan.beyond_pool = max(0, len(ranked) - pool)
    return [
        (int(qi[k]), int(top_id[k]), int(qs[k]), int(top_score[k]), bool(top_acc[k]))
        for k in ranked[:pool]
    ]

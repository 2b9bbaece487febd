"""wikiHow articles from a CSV in one of the public layouts, or from JSONL.

CSV layouts, told apart by the header (names in any case; a byte-order mark and CRLF are fine):

- ``headline,title,text``: the Koupaee & Wang ``wikihowAll.csv``, one article per row;
- ``title,heading,paragraph``: one step per row (scraped articles); consecutive rows with the same
  title are one article, steps numbered in file order;
- ``title,result``: one article per row, its steps numbered inside one multi-line quoted field;
  the titles lack "How to", which is added.

Any other header can be mapped with ``columns`` (role -> column name), e.g. ``{"title": "Question",
"text": "Body"}``; roles: ``title`` (the prompt), ``text`` (a whole article per row), ``step`` and
``heading`` (one step per row), ``category``. JSONL rows hold ``title``, ``text`` and an optional
``category`` (the same mapping applies to their keys). Without a category column all articles form
one category. Each article becomes ``Example(user=title, assistant=cleaned text)``.

>>> for article in read_wikihow("wikihowAll.csv"):  # doctest: +SKIP
...     print(article.meta["category"], article.prompt)
"""

from __future__ import annotations

import csv
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from limakit.core.config import Config
from limakit.core.errors import LimaError
from limakit.core.files import read_jsonl_records
from limakit.records.example import Example, Message
from limakit.sources.registry import Candidate

UNCATEGORISED = "uncategorised"
ROLES = ("title", "text", "step", "heading", "category")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_THIS_ARTICLE = re.compile(r"\b([Tt])his article\b")
# What is left of wikiHow's citation pop-ups in scraped text: "[3] X Research source",
# "[5] X Trustworthy Source <who> <what> Go to source", "[4] X Expert Source <who> Expert
# Interview. 21 April 2020."
_CITATION = re.compile(
    r"\s*\[\d+\]\s*X (?:Research source|Trustworthy Source [^\[]*?Go to source"
    r"|Expert Source [^\[]*?Expert Interview\. \d{1,2} \w+ \d{4}\.)"
)

# Layouts recognised from the header alone: name -> (role -> column), checked in this order.
LAYOUTS: dict[str, dict[str, str]] = {
    "headline,title,text": {"title": "title", "text": "text"},
    "title,heading,paragraph": {"title": "title", "heading": "heading", "step": "paragraph"},
    "title,result": {"title": "title", "text": "result"},
}
_LAYOUT_HELP = (
    "headline,title,text (one article per row); title,heading,paragraph (one step per row, "
    "grouped by title); title,result (numbered steps in one field)"
)


def clean_article(text: str) -> str:
    """Normalise whitespace, drop empty lines and citation residue, and turn "This article" into
    "The following answer"."""
    text = _CITATION.sub("", text.replace("\r\n", "\n"))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    paragraphs = [line.lstrip(",;").strip() for line in lines]
    body = "\n\n".join(p for p in paragraphs if p)
    return _THIS_ARTICLE.sub(
        lambda m: "The following answer" if m.group(1) == "T" else "the following answer", body
    )


def how_to(title: str) -> str:
    """A wikiHow title as the prompt: "How to " in front where the layout dropped it.

    >>> how_to("Zoom in on Google Maps"), how_to("How to Grow Tomatoes")
    ('How to Zoom in on Google Maps', 'How to Grow Tomatoes')
    """
    title = _SPACES.sub(" ", title or "").strip()
    if not title or title.lower().startswith("how to"):
        return title
    return f"How to {title}"


def _example(title: str, text: str, category: str, where: str, rid: str) -> Example:
    title = _SPACES.sub(" ", title or "").strip()
    msgs = [Message("user", title), Message("assistant", clean_article(text or ""))]
    return Example(
        msgs, source="wikihow", id=f"wikihow-{rid}", meta={"category": category, "where": where}
    )


def read_wikihow(
    path: str | os.PathLike, columns: dict[str, str] | None = None, add_how_to: bool = True
) -> Iterator[Example]:
    """Stream articles from a ``.csv`` (any layout above) or ``.jsonl`` file.

    ``columns`` maps roles to the file's column (or key) names; ``add_how_to`` puts "How to " in
    front of titles that lack it.
    """
    path = Path(path)
    if not path.exists():
        raise LimaError(f"{path}: wikiHow file not found")
    columns = {k: v.strip().lower() for k, v in (columns or {}).items()}
    unknown = set(columns) - set(ROLES)
    if unknown:
        raise LimaError(
            f"wikiHow columns: unknown role(s) {sorted(unknown)}; roles: {', '.join(ROLES)}"
        )
    title = how_to if add_how_to else (lambda t: t)
    if path.suffix.lower() == ".csv":
        for t, text, cat, where, rid in _read_csv(path, columns):
            yield _example(title(t), text, cat, where, rid)
        return
    if {"step", "heading"} & set(columns):
        raise LimaError(f"{path}: the roles step and heading apply to CSV files (one step per row)")
    keys = {"title": "title", "text": "text", "category": "category", **columns}
    for lineno, raw in read_jsonl_records(path):
        obj = {str(k).lower(): v for k, v in raw.items()}  # Title/title alike
        cat = obj.get(keys["category"]) or UNCATEGORISED
        if isinstance(cat, list):
            cat = cat[0] if cat else UNCATEGORISED
        yield _example(
            title(str(obj.get(keys["title"]) or "")),
            str(obj.get(keys["text"]) or ""),
            str(cat),
            f"{path}:{lineno}",
            str(obj.get("id") or lineno),
        )


def _layout(path: Path, header: list[str], columns: dict[str, str]) -> dict[str, int]:
    """Role -> column index, from the mapping or the header; a clear error when neither fits."""
    index = {name.strip().lower(): i for i, name in enumerate(header)}
    seen = ", ".join(header)
    if columns:
        missing = [c for c in columns.values() if c not in index]
        if missing:
            raise LimaError(
                f"{path}:1: wikiHow columns map to {', '.join(missing)}, not in the header "
                f"(columns seen: {seen})"
            )
        roles = set(columns)
        if "title" not in roles or ("text" in roles) == ("step" in roles):
            raise LimaError(
                f"{path}:1: wikiHow columns must map 'title' and one of 'text' (an article per "
                f"row) or 'step' (a step per row); got {sorted(roles)}"
            )
        return {role: index[c] for role, c in columns.items()}
    for roles in LAYOUTS.values():
        if all(c in index for c in roles.values()):
            return {role: index[c] for role, c in roles.items()}
    raise LimaError(
        f"{path}:1: unknown wikiHow CSV layout (columns seen: {seen}); accepted layouts: "
        f"{_LAYOUT_HELP}; or map your columns with wikihow_options.columns, e.g. "
        "--set wikihow_options.columns.title=Question --set wikihow_options.columns.text=Answer"
    )


def _rows(path: Path, reader, width: int) -> Iterator[tuple[int, list[str]]]:
    """``(first line, row)`` of each non-empty data row; damage is a LimaError with the line."""
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise LimaError(f"{path}:{start}: malformed CSV ({e})") from None
        if not row:
            continue
        if len(row) != width:
            raise LimaError(f"{path}:{start}: row has {len(row)} fields, the header has {width}")
        yield start, row


def _read_csv(path: Path, columns: dict[str, str]) -> Iterator[tuple[str, str, str, str, str]]:
    """``(title, text, category, where, id)`` per article."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # articles can exceed the 128 KB default
    # surrogateescape keeps undecodable bytes visible to the `encoding` rule instead of crashing.
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise LimaError(
                f"{path}: empty CSV file (expected a header; layouts: {_LAYOUT_HELP})"
            ) from None
        except csv.Error as e:
            raise LimaError(f"{path}:1: malformed CSV header ({e})") from None
        roles = _layout(path, header, columns)
        ci = roles.get("category")
        n = 0
        if "text" in roles:
            for start, row in _rows(path, reader, len(header)):
                n += 1
                cat = (row[ci].strip() if ci is not None else "") or UNCATEGORISED
                yield row[roles["title"]], row[roles["text"]], cat, f"{path}:{start}", str(n)
        else:
            # One step per row: consecutive rows with one title are one article, in file order.
            ti, si, hi = roles["title"], roles["step"], roles.get("heading")
            steps: list[str] = []
            first, title, cat = 0, None, UNCATEGORISED
            for start, row in _rows(path, reader, len(header)):
                if row[ti] != title:
                    if steps:
                        n += 1
                        yield title, _numbered(steps), cat, f"{path}:{first}", str(n)
                    steps, first, title = [], start, row[ti]
                    cat = (row[ci].strip() if ci is not None else "") or UNCATEGORISED
                steps.append(_step(row[hi] if hi is not None else "", row[si]))
            if steps:
                n += 1
                yield title, _numbered(steps), cat, f"{path}:{first}", str(n)
        if n == 0:
            raise LimaError(f"{path}: no article after the header")


def _step(heading: str, paragraph: str) -> str:
    """A step's text: the paragraph, led by its heading unless it already starts with it."""
    heading, paragraph = _SPACES.sub(" ", heading).strip(), _SPACES.sub(" ", paragraph).strip()
    if not heading or paragraph.startswith(heading):
        return paragraph
    return f"{heading} {paragraph}".strip()


def _numbered(steps: list[str]) -> str:
    return "\n".join(f"{i}. {s}" for i, s in enumerate((s for s in steps if s), start=1))


class WikiHowConfig(Config):
    """wikiHow reading: which columns of the file hold what (see limakit.sources.wikihow)."""

    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Role -> column name in your CSV (or key in your JSONL); roles: title (the "
        "prompt), text (a whole article per row), step and heading (one step per row, rows "
        "grouped by title), category. Empty: the layout is read from the header "
        "(headline,title,text; title,heading,paragraph; title,result).",
    )
    add_how_to: bool = Field(
        True, description="Put 'How to ' in front of titles that lack it (title,result has none)."
    )


def candidates(paths: list[str], ctx) -> Iterator[Candidate]:
    """The registered source's reader: every article, grouped by its category."""
    opts = ctx.options
    for path in paths:
        for ex in read_wikihow(path, columns=opts.columns, add_how_to=opts.add_how_to):
            yield Candidate(ex, group=ex.meta["category"])

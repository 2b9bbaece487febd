"""wikiHow articles: the public ``wikihowAll.csv`` (Headline, Title, Text) or JSONL.

JSONL rows hold ``title``, ``text`` and an optional ``category``; the CSV has no category, so its
articles form one category. Each article becomes ``Example(user=title, assistant=cleaned text)``.

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

from limakit.errors import LimaError
from limakit.example import Example, Message
from limakit.files import read_jsonl_records

UNCATEGORISED = "uncategorised"
_SPACES = re.compile(r"[ \t\r\f\v]+")
_THIS_ARTICLE = re.compile(r"\b([Tt])his article\b")


def clean_article(text: str) -> str:
    """Normalise whitespace, drop empty lines, and turn "This article" into "The following answer"."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    paragraphs = [line.lstrip(",;").strip() for line in lines]
    body = "\n\n".join(p for p in paragraphs if p)
    return _THIS_ARTICLE.sub(
        lambda m: "The following answer" if m.group(1) == "T" else "the following answer", body
    )


def _example(title: str, text: str, category: str, where: str, rid: str) -> Example:
    title = _SPACES.sub(" ", title or "").strip()
    msgs = [Message("user", title), Message("assistant", clean_article(text or ""))]
    return Example(
        msgs, source="wikihow", id=f"wikihow-{rid}", meta={"category": category, "where": where}
    )


def read_wikihow(path: str | os.PathLike) -> Iterator[Example]:
    """Stream articles from a ``.csv`` (wikihowAll layout) or ``.jsonl`` file."""
    path = Path(path)
    if not path.exists():
        raise LimaError(f"{path}: wikiHow file not found")
    if path.suffix.lower() == ".csv":
        yield from _read_csv(path)
    else:
        for lineno, raw in read_jsonl_records(path):
            obj = {str(k).lower(): v for k, v in raw.items()}  # Title/title alike
            cat = obj.get("category") or UNCATEGORISED
            if isinstance(cat, list):
                cat = cat[0] if cat else UNCATEGORISED
            yield _example(
                str(obj.get("title") or ""),
                str(obj.get("text") or ""),
                str(cat),
                f"{path}:{lineno}",
                str(obj.get("id") or lineno),
            )


def _read_csv(path: Path) -> Iterator[Example]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # articles can exceed the 128 KB default
    # surrogateescape keeps undecodable bytes visible to the `encoding` rule instead of crashing.
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise LimaError(
                f"{path}: empty CSV file (expected a header Headline,Title,Text)"
            ) from None
        except csv.Error as e:
            raise LimaError(f"{path}:1: malformed CSV header ({e})") from None
        cols = {name.strip().lower(): i for i, name in enumerate(header)}
        missing = [c for c in ("title", "text") if c not in cols]
        if missing:
            raise LimaError(
                f"{path}:1: CSV header lacks column(s) {', '.join(missing)} (got {', '.join(header)})"
            )
        ti, xi = cols["title"], cols["text"]
        n = 0
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
            if len(row) != len(header):
                raise LimaError(
                    f"{path}:{start}: row has {len(row)} fields, the header has {len(header)}"
                )
            n += 1
            yield _example(row[ti], row[xi], UNCATEGORISED, f"{path}:{start}", str(n))

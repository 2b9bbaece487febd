"""Reddit dumps in Pushshift's NDJSON form (plain or ``.zst``): submissions and comments.

Submissions carry ``id, subreddit, title, selftext, score``; comments carry ``link_id`` (``t3_<id>``),
``parent_id``, ``body``, ``score``. A file may hold either or both. Two streaming passes:

1. keep r/WritingPrompts ``[WP]`` submissions (id, title, score), each one's best-scored top-level
   story comment (score and position only), and the best r/AskReddit titles;
2. fetch the bodies of the ``pool`` best-scored prompts' stories.

>>> scan = scan_reddit(["RS_2019-01.zst", "RC_2019-01.zst"], pool=500)  # doctest: +SKIP
>>> scan.pairs[0].prompt  # doctest: +SKIP
'A dragon hoards words instead of gold.'
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from limakit.core.config import Config
from limakit.core.errors import LimaError
from limakit.core.files import parse_jsonl_chunks
from limakit.core.lines import read_chunks
from limakit.records.example import Example, Message
from limakit.sources.registry import Candidate, Group, Note, Read, Rejection, TestPrompt

_TAG = re.compile(r"^\s*(\[[^\]]{1,12}\]\s*|\([A-Za-z]{1,4}\)\s*)+")
_URL = re.compile(r"https?://|www\.", re.I)
_DEICTIC = re.compile(r"\b(this|these) (post|pic|picture|image|photo|video|gif|thread|sub)\b", re.I)
DELETED = {"[deleted]", "[removed]", ""}
BOTS = {"automoderator"}


def strip_tags(title: str) -> tuple[str, list[str]]:
    """``"[WP] [OT] A dragon..."`` -> ``("A dragon...", ["WP", "OT"])``."""
    m = _TAG.match(title)
    if not m:
        return title.strip(), []
    tags = re.findall(r"[\[(]([^\])]+)[\])]", m.group(0))
    return title[m.end() :].strip(), [t.strip().upper() for t in tags]


def _zst_chunks(f, path: Path) -> Iterator[bytes]:
    """Decompressed chunks of a (multi-frame) zstandard file; a cut-off frame is an error."""
    import zstandard

    # Pushshift archives use a long window; the default limit would refuse them.
    dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
    dobj = dctx.decompressobj()
    fed = False  # whether the current frame has received any bytes
    offset = 0
    while True:
        raw = f.read(1 << 20)
        if not raw:
            break
        offset += len(raw)
        while raw:
            fed = True
            try:
                out = dobj.decompress(raw)
            except zstandard.ZstdError as e:
                raise LimaError(
                    f"{path}: byte offset ~{offset}: corrupt zstandard data ({e})"
                ) from None
            if out:
                yield out
            raw = dobj.unused_data if dobj.eof else b""
            if dobj.eof:
                dobj, fed = dctx.decompressobj(), False
    if fed and not dobj.eof:
        raise LimaError(
            f"{path}: byte offset {offset}: the zstandard stream is cut off (truncated file)"
        )


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line_number, object)`` of a plain or zstandard-compressed NDJSON file."""
    if not path.exists():
        raise LimaError(f"{path}: Reddit file not found")
    with open(path, "rb") as f:
        chunks = _zst_chunks(f, path) if path.suffix == ".zst" else read_chunks(f)
        yield from parse_jsonl_chunks(path, chunks)


@dataclass
class RedditScan:
    pairs: list[Example] = field(default_factory=list)
    test_prompts: list[Example] = field(default_factory=list)
    rejected: list[tuple[str, str, str, dict]] = field(
        default_factory=list
    )  # id, rule, reason, meta
    skipped: dict[str, int] = field(default_factory=dict)  # records outside the used subreddits
    eligible: int = 0
    beyond_pool: int = 0


def _score(obj: dict, path: Path, lineno: int) -> int:
    try:
        return int(obj.get("score") or 0)
    except (TypeError, ValueError):
        raise LimaError(
            f"{path}:{lineno}: 'score' must be a number, got {obj.get('score')!r}"
        ) from None


@dataclass
class _FirstPass:
    """What the first pass keeps: prompts, each one's best story (position only), AskReddit titles."""

    scan: RedditScan
    wanted_tags: set[str]
    test_prompts: int
    prompts: dict[str, tuple[str, int, str]] = field(
        default_factory=dict
    )  # id -> title, score, where
    best: dict[str, tuple[int, int, int, str]] = field(
        default_factory=dict
    )  # link -> score, file, line, id
    ask: list[tuple[int, str, str]] = field(default_factory=list)  # heap of (score, id, title)

    def skip(self, kind: str) -> None:
        self.scan.skipped[kind] = self.scan.skipped.get(kind, 0) + 1

    def read(self, fi: int, path: Path, lineno: int, obj: dict) -> None:
        sub = str(obj.get("subreddit") or "").lower()
        is_comment = "link_id" in obj or "body" in obj
        if sub == "writingprompts" and not is_comment:
            self.prompt(path, lineno, obj)
        elif sub == "writingprompts":
            self.story(fi, path, lineno, obj)
        elif sub == "askreddit" and not is_comment:
            self.question(path, lineno, obj)
        else:
            self.skip(f"r/{sub or '?'} {'comments' if is_comment else 'submissions'}")

    def prompt(self, path: Path, lineno: int, obj: dict) -> None:
        where = f"{path}:{lineno}"
        rid = str(obj.get("id") or "")
        if not rid:
            raise LimaError(f"{where}: submission lacks 'id'")
        title, found = strip_tags(str(obj.get("title") or ""))
        if not self.wanted_tags & set(found):
            reason = f"title tags {found or 'none'} lack {sorted(self.wanted_tags)}"
            self.scan.rejected.append(
                (f"reddit-{rid}", "not_writing_prompt", reason, {"where": where})
            )
            return
        self.prompts[rid] = (title, _score(obj, path, lineno), where)

    def story(self, fi: int, path: Path, lineno: int, obj: dict) -> None:
        link = str(obj.get("link_id") or "")
        if not link:
            raise LimaError(f"{path}:{lineno}: comment lacks 'link_id'")
        if obj.get("parent_id") != link:
            return self.skip("reply comments")
        body = str(obj.get("body") or "").strip()
        author = str(obj.get("author") or "").lower()
        if body in DELETED:
            return self.skip("deleted or removed comments")
        if author in BOTS or obj.get("stickied") or obj.get("distinguished") == "moderator":
            return self.skip("bot or moderator comments")
        score = _score(obj, path, lineno)
        key = link[3:] if link.startswith("t3_") else link
        cur = self.best.get(key)
        if cur is None or score > cur[0]:
            self.best[key] = (score, fi, lineno, str(obj.get("id") or ""))

    def question(self, path: Path, lineno: int, obj: dict) -> None:
        title, _ = strip_tags(str(obj.get("title") or ""))
        reason = _ask_problem(title)
        if reason:
            return self.skip(f"AskReddit titles not self-contained ({reason})")
        item = (_score(obj, path, lineno), str(obj.get("id") or lineno), title)
        if len(self.ask) < self.test_prompts:
            heapq.heappush(self.ask, item)
        else:
            heapq.heappushpop(self.ask, item)

    def ranked(self, min_story_score: int) -> list[tuple[int, str]]:
        """Prompts with a good enough story, best-scored first; the others are rejected."""
        ranked = []
        for rid, (_title, score, where) in self.prompts.items():
            story = self.best.get(rid)
            if story is None:
                rule, reason = "no_story", "no top-level story comment"
            elif story[0] < min_story_score:
                rule, reason = "story_score", f"best story score {story[0]} < {min_story_score}"
            else:
                ranked.append((-score, rid))
                continue
            self.scan.rejected.append((f"reddit-{rid}", rule, reason, {"where": where}))
        return sorted(ranked)


def _bodies(files: list[Path], wanted: dict[tuple[int, int], str]) -> dict[str, str]:
    """Second pass: the story bodies at the wanted (file, line) positions, by prompt id."""
    bodies: dict[str, str] = {}
    for fi, path in enumerate(files):
        if not any(k[0] == fi for k in wanted):
            continue
        for lineno, obj in _records(path):
            rid = wanted.get((fi, lineno))
            if rid is not None:
                bodies[rid] = str(obj.get("body") or "").strip()
    return bodies


def scan_reddit(
    paths: list[str | os.PathLike],
    *,
    pool: int = 1000,
    test_prompts: int = 70,
    tags: tuple[str, ...] = ("WP",),
    min_story_score: int = 0,
) -> RedditScan:
    """Pair WritingPrompts prompts with their best story; collect AskReddit titles as test prompts."""
    files = [Path(p) for p in paths]
    scan = RedditScan()
    first = _FirstPass(scan, {t.upper() for t in tags}, test_prompts)
    for fi, path in enumerate(files):
        for lineno, obj in _records(path):
            first.read(fi, path, lineno, obj)

    ranked = first.ranked(min_story_score)
    scan.eligible = len(ranked)
    scan.beyond_pool = max(0, len(ranked) - pool)
    best = first.best
    bodies = _bodies(files, {(best[rid][1], best[rid][2]): rid for _, rid in ranked[:pool]})
    for _, rid in ranked[:pool]:
        title, score, where = first.prompts[rid]
        sscore, _, _, cid = best[rid]
        meta = {"prompt_score": score, "story_score": sscore, "comment_id": cid, "where": where}
        scan.pairs.append(
            Example(
                [Message("user", title), Message("assistant", bodies.get(rid, ""))],
                source="writingprompts",
                id=f"reddit-{rid}",
                meta=meta,
            )
        )
    for score, rid, title in sorted(first.ask, key=lambda t: (-t[0], t[1])):
        scan.test_prompts.append(
            Example(
                [Message("user", title)],
                source="askreddit",
                id=f"askreddit-{rid}",
                meta={"score": score},
            )
        )
    return scan


def _ask_problem(title: str) -> str | None:
    """Why an AskReddit title is not a self-contained prompt, or None."""
    if len(title) < 10:
        return "too short"
    if _URL.search(title):
        return "holds a link"
    if _DEICTIC.search(title):
        return "points at a post or picture"
    if not title.rstrip().endswith("?"):
        return "not a question"
    return None


class RedditConfig(Config):
    """Reddit (Pushshift) reading."""

    tags: list[str] = Field(
        default_factory=lambda: ["WP"], description="WritingPrompts title tags kept."
    )
    pool: int = Field(1000, description="Keep stories for at most this many best-scored prompts.")
    min_story_score: int = Field(0, description="Best story comment must score >= this.")
    test_prompts: int = Field(70, description="AskReddit titles kept as test prompts.")


def candidates(paths: list[str], ctx):
    """The registered source's reader: ranked WritingPrompts pairs, AskReddit test prompts."""
    opts = ctx.options
    scan = scan_reddit(
        paths,
        pool=opts.pool,
        test_prompts=opts.test_prompts,
        tags=tuple(opts.tags),
        min_story_score=opts.min_story_score,
    )
    for rid, rule, reason, meta in scan.rejected:
        yield Rejection(rid, rule, reason, meta=meta, source="writingprompts", counted=False)
    for kind, n in sorted(scan.skipped.items()):
        yield Note(f"Reddit: {n} {kind} not used")
    if scan.beyond_pool:
        yield Note(f"Reddit: {scan.beyond_pool} prompts below the top {opts.pool} not examined")
    yield Read(scan.eligible + len(scan.rejected))
    yield Group("writingprompts", "writingprompts", [])  # the bucket, even when all are rejected
    for ex in scan.pairs:
        yield Candidate(ex, group="writingprompts", counted=False)
    for ex in scan.test_prompts:
        yield TestPrompt(ex)

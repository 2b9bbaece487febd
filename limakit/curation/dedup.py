"""Exact and near-duplicate removal, and decontamination against evaluation prompts.

Both take examples in priority order (the first of a duplicate pair is kept) and return the kept
ones plus ``(example, rule, reason)`` for each removal, so the caller can report every one.

>>> from limakit.records.example import Example, Message
>>> a = Example([Message("user", "How do I boil an egg?"), Message("assistant", "Boil it.")])
>>> kept, removed = deduplicate([a, a], near=False)
>>> len(kept), removed[0][1]
(1, 'duplicate')
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from collections.abc import Iterable
from pathlib import Path

from limakit.core.errors import LimaError
from limakit.core.files import read_jsonl_records
from limakit.records.example import Example

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _norm(text: str) -> str:
    return " ".join(words(text))


class Deduper:
    """Remembers accepted examples; ``check(ex)`` says whether ``ex`` duplicates one of them.

    Exact: same normalised prompt. Near: MinHash LSH over word shingles of prompt + answer.
    """

    def __init__(
        self,
        *,
        exact: bool = True,
        near: bool = True,
        threshold: float = 0.8,
        num_perm: int = 128,
        shingle: int = 5,
    ) -> None:
        self.exact, self.threshold, self.num_perm, self.shingle = (
            exact,
            threshold,
            num_perm,
            shingle,
        )
        self.seen: dict[str, str] = {}
        self.keys: set[str] = set()
        self.lsh = None
        if near:
            from datasketch import MinHash, MinHashLSH

            self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
            # Drawing the permutations is a large share of a MinHash's cost: do it once.
            template = MinHash(num_perm=num_perm, seed=1)
            self.perms, self.scheme = template.permutations, template.scheme

    def _minhash(self, ex: Example):
        from datasketch import MinHash

        toks = words(ex.prompt + " " + (ex.answer or ""))
        n = self.shingle
        grams = {" ".join(toks[i : i + n]) for i in range(max(1, len(toks) - n + 1))}
        # crc32: deterministic across processes (unlike hash()) and cheaper than sha1.
        mh = MinHash(
            num_perm=self.num_perm,
            seed=1,
            hashfunc=zlib.crc32,
            permutations=self.perms,
            scheme=self.scheme,
        )
        mh.update_batch([g.encode() for g in grams])
        return mh

    def check(self, ex: Example) -> tuple[str, str] | None:
        """``(rule, reason)`` if ``ex`` duplicates an accepted example; else accept it."""
        key = hashlib.sha1(_norm(ex.prompt).encode()).hexdigest() if self.exact else ""
        if self.exact and key in self.seen:
            return "duplicate", f"same prompt as {self.seen[key]}"
        mh = None
        if self.lsh is not None:
            mh = self._minhash(ex)
            hits = self.lsh.query(mh)
            if hits:
                return (
                    "near_duplicate",
                    f"near-duplicate (Jaccard >= {self.threshold}) of {sorted(hits)[0]}",
                )
        if self.exact:
            self.seen[key] = ex.id
        if mh is not None:
            name = ex.id if ex.id not in self.keys else f"{ex.id}#{len(self.keys)}"
            self.keys.add(name)
            self.lsh.insert(name, mh)
        return None


def deduplicate(
    examples: Iterable[Example], deduper: Deduper | None = None, **options
) -> tuple[list[Example], list[tuple[Example, str, str]]]:
    """Keep the first of each duplicate group; report the others with rule and reason."""
    deduper = deduper or Deduper(**options)
    kept: list[Example] = []
    removed: list[tuple[Example, str, str]] = []
    for ex in examples:
        hit = deduper.check(ex)
        if hit:
            removed.append((ex, *hit))
        else:
            kept.append(ex)
    return kept, removed


def prompt_texts(obj: dict) -> list[str]:
    """The prompt strings of an evaluation record in any common layout."""
    out: list[str] = []
    for key in ("prompt", "instruction", "question", "input", "text"):
        if isinstance(obj.get(key), str):
            out.append(obj[key])
    if isinstance(obj.get("turns"), list):  # MT-Bench
        out += [t for t in obj["turns"] if isinstance(t, str)]
    if isinstance(obj.get("messages"), list):
        out += [
            m["content"]
            for m in obj["messages"]
            if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str)
        ]
    if isinstance(obj.get("conversations"), list):  # GAIR/lima (strings) or ShareGPT (dicts)
        for i, c in enumerate(obj["conversations"]):
            if isinstance(c, str) and i % 2 == 0:
                out.append(c)
            elif isinstance(c, dict) and str(c.get("from")).lower() in ("human", "user"):
                out.append(str(c.get("value", "")))
    return out


class Decontaminator:
    """An index of evaluation n-grams; ``hit(text)`` names the eval file and an overlapping n-gram."""

    def __init__(self, paths: list[str | os.PathLike], n: int = 13) -> None:
        self.n = n
        self.index: dict[int, str] = {}
        self.prompts = 0
        self.short: list[str] = []
        self.short_where: list[str] = []
        for path in paths:
            p = Path(path)
            if not p.exists():
                raise LimaError(f"{p}: decontamination set not found")
            for lineno, obj in read_jsonl_records(p):
                texts = prompt_texts(obj)
                if not texts:
                    raise LimaError(f"{p}:{lineno}: no prompt field (prompt/turns/messages/...)")
                self.prompts += 1
                for text in texts:
                    before = len(self.short)
                    for g in self._grams(text):
                        self.index.setdefault(g, f"{p.name}:{lineno}")
                    self.short_where += [f"{p.name}:{lineno}"] * (len(self.short) - before)

    def _grams(self, text: str) -> set[int]:
        toks = words(text)
        if len(toks) < self.n:
            # A prompt shorter than n words counts when it appears whole inside a text.
            if toks:
                self.short.append(" " + " ".join(toks) + " ")
            return set()
        return {hash(" ".join(toks[i : i + self.n])) for i in range(len(toks) - self.n + 1)}

    def hit(self, text: str) -> str | None:
        toks = words(text)
        for i in range(len(toks) - self.n + 1):
            g = " ".join(toks[i : i + self.n])
            where = self.index.get(hash(g))
            if where:
                return f"{self.n}-gram overlap with {where}: {json.dumps(g[:80])}"
        if self.short:
            joined = " " + " ".join(toks) + " "
            for s, where in zip(self.short, self.short_where):
                if s in joined:
                    return f"contains the whole short prompt {where}: {json.dumps(s.strip()[:80])}"
        return None

    def split(
        self, examples: Iterable[Example], fields: str = "both"
    ) -> tuple[list[Example], list[tuple[Example, str, str]]]:
        kept, removed = [], []
        for ex in examples:
            text = ex.prompt if fields == "prompt" else ex.prompt + "\n" + (ex.answer or "")
            reason = self.hit(text) if (self.index or self.short) else None
            if reason:
                removed.append((ex, "decontamination", reason))
            else:
                kept.append(ex)
        return kept, removed

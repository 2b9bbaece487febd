"""Unlabelled texts for back-translation: reading them, then hygiene with every drop counted.

A text is a plain dict ``{"id", "text", "source", "meta"}``. Inputs:

- ``.txt`` / ``.md`` files (one text each), or folders of them (read recursively, sorted);
- JSONL files whose records hold the text in ``hygiene.text_field`` (and optionally an ``id``);
- Stack Exchange dumps (a site folder with ``Posts.xml``, a site ``.7z``, a ``Posts.xml`` file or a
  folder of sites): each question's top answer becomes a text, its question is dropped from the
  text and kept in ``meta.question`` (title) and ``meta.question_body`` for the card's figure.

Hygiene, in order: LIMA's rules (:mod:`limakit.curation.rules`, e.g. length bounds, first person,
references to the site), exact and near-duplicate removal against the seed's answers and then among
the texts (:mod:`limakit.curation.dedup`), decontamination against evaluation prompts, an optional
seeded cap. Each drop is a row ``{"id", "rule", "reason", "step", "chars"}``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

from limakit.backtranslate.config import HygieneConfig
from limakit.core.errors import LimaError
from limakit.records.example import Example, Message

TEXT_SUFFIXES = (".txt", ".md", ".markdown")


def text_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha1(text.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def drop(item: dict, rule: str, reason: str, step: str = "texts") -> dict:
    return {
        "id": item.get("id", ""),
        "rule": rule,
        "reason": reason,
        "step": step,
        "chars": len(item.get("text") or ""),
    }


def _is_site(p: Path) -> bool:
    return (p.is_dir() and (p / "Posts.xml").is_file()) or (p.is_file() and p.suffix == ".7z")


def read_text_file(path: Path) -> Iterator[dict]:
    try:
        text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise LimaError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    yield {
        "id": text_id("txt", f"{path}\0{text}"),
        "text": text.strip(),
        "source": "text",
        "meta": {"path": str(path)},
    }


def read_jsonl_texts(path: Path, field: str, drops: list[dict]) -> Iterator[dict]:
    from limakit.core.files import read_jsonl_records

    for lineno, obj in read_jsonl_records(path):
        value = obj.get(field)
        if not isinstance(value, str):
            drops.append(
                drop(
                    {"id": f"{path.name}:{lineno}"},
                    "no_text_field",
                    f"{path}:{lineno}: no string field {field!r}",
                )
            )
            continue
        rid = obj.get("id")
        yield {
            "id": str(rid)
            if isinstance(rid, (str, int)) and str(rid)
            else text_id("jsonl", f"{path}:{lineno}"),
            "text": value.strip(),
            "source": str(obj.get("source") or "jsonl"),
            "meta": {"path": str(path), "line": lineno},
        }


def read_site(site_path: Path, cfg: HygieneConfig, drops: list[dict]) -> Iterator[dict]:
    """Top answers of one Stack Exchange site; questions go to meta, low scores are drops."""
    from limakit.curation.markdown import html_to_markdown
    from limakit.sources.se_sites import is_meta_site, posts_file, site_name
    from limakit.sources.stackexchange import scan_site

    site = site_name(site_path)
    if is_meta_site(site_path):
        drops.append(
            drop({"id": f"se-{site}"}, "meta_site", f"{site_path}: a meta site, about the site")
        )
        return

    def on_reject(qid, rule, reason, qscore, ascore):
        drops.append(drop({"id": f"se-{site}-q{qid}"}, rule, reason))

    rules = cfg.rules
    with posts_file(site_path) as posts:
        scan = scan_site(
            posts,
            site=site,
            pool=cfg.se_pool,
            min_answer_score=cfg.limits.min_answer_score if "answer_score" in rules else -(2**62),
            min_question_score=cfg.limits.min_question_score if "question_score" in rules else None,
            on_reject=on_reject,
        )
    if scan.beyond_pool:
        drops.append(
            drop(
                {"id": f"se-{site}"},
                "beyond_pool",
                f"{site}: {scan.beyond_pool} eligible answers ranked below the top {cfg.se_pool} "
                "were not read (hygiene.se_pool)",
            )
        )
    for pair in scan.pairs:
        yield {
            "id": f"se-{site}-{pair.answer_id}",
            "text": html_to_markdown(pair.answer_html),
            "source": "stackexchange",
            "meta": {
                "site": site,
                "question_id": pair.question_id,
                "answer_id": pair.answer_id,
                "question": pair.title.strip(),
                "question_body": html_to_markdown(pair.question_html),
                "question_score": pair.question_score,
                "answer_score": pair.answer_score,
            },
        }


def read_path(path: Path, cfg: HygieneConfig, drops: list[dict]) -> Iterator[dict]:
    """Every text under one input path (see the module docstring for what is read)."""
    if not path.exists():
        raise LimaError(f"{path}: texts not found")
    if path.is_file() and path.name == "Posts.xml":
        yield from read_site(path.parent, cfg, drops)
    elif _is_site(path):
        yield from read_site(path, cfg, drops)
    elif path.is_file():
        suffix = path.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            yield from read_text_file(path)
        elif suffix == ".jsonl":
            yield from read_jsonl_texts(path, cfg.text_field, drops)
        else:
            raise LimaError(
                f"{path}: unsupported text file (use .txt, .md, .jsonl, a Stack Exchange site "
                "folder, Posts.xml or .7z)"
            )
    else:
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            if (
                child.is_dir()
                or _is_site(child)
                or child.suffix.lower() in (*TEXT_SUFFIXES, ".jsonl")
            ):
                yield from read_path(child, cfg, drops)
            else:
                drops.append(
                    drop(
                        {"id": str(child)},
                        "unsupported_file",
                        f"{child}: not .txt, .md, .jsonl or a Stack Exchange dump",
                    )
                )


def as_example(item: dict) -> Example:
    """The text as an answer, for the rules: the real question when known, else a placeholder."""
    question = item["meta"].get("question") or "(unknown instruction)"
    meta = {k: item["meta"][k] for k in ("answer_score", "question_score") if k in item["meta"]}
    return Example(
        [Message("user", question), Message("assistant", item["text"])], id=item["id"], meta=meta
    )


def _dedup_example(item_id: str, text: str) -> Example:
    # The text stands on both sides: the exact rule compares the (normalised) whole text, the
    # near rule its shingles.
    return Example([Message("user", text), Message("assistant", text)], id=item_id)


def hygiene(
    texts: list[dict], seed: list[Example], cfg: HygieneConfig, rng_seed: int, drops: list[dict]
) -> list[dict]:
    """The texts that pass every check, in input order; the others appended to ``drops``."""
    from limakit.curation.dedup import Decontaminator, Deduper
    from limakit.curation.rules import check

    kept = []
    for item in texts:
        hit = check(as_example(item), cfg.rules, cfg.limits)
        if hit:
            drops.append(drop(item, *hit))
        else:
            kept.append(item)

    d = cfg.dedup
    if d.exact or d.near:
        deduper = Deduper(
            exact=d.exact,
            near=d.near,
            threshold=d.threshold,
            num_perm=d.num_perm,
            shingle=d.shingle,
        )
        for ex in seed:
            deduper.check(_dedup_example(f"seed:{ex.id}", ex.answer or ""))
        survivors = []
        for item in kept:
            hit = deduper.check(_dedup_example(item["id"], item["text"]))
            if hit is None:
                survivors.append(item)
                continue
            rule, reason = hit
            if "seed:" in reason:
                rule = f"seed_{rule}"
            drops.append(drop(item, rule, reason))
        kept = survivors

    if cfg.decontaminate.against:
        decon = Decontaminator(cfg.decontaminate.against, n=cfg.decontaminate.n)
        survivors = []
        for item in kept:
            reason = decon.hit(item["text"])
            if reason:
                drops.append(drop(item, "decontamination", reason))
            else:
                survivors.append(item)
        kept = survivors

    if cfg.max_texts is not None and len(kept) > cfg.max_texts:
        chosen = set(random.Random(rng_seed).sample(range(len(kept)), cfg.max_texts))
        for i, item in enumerate(kept):
            if i not in chosen:
                drops.append(drop(item, "max_texts", f"not among the {cfg.max_texts} sampled"))
        kept = [item for i, item in enumerate(kept) if i in chosen]
    return kept


def gather(paths: list[str], cfg: HygieneConfig, drops: list[dict]) -> list[dict]:
    """Every text of every input path, each id once (a repeated id is a drop, rule duplicate_id)."""
    out, seen = [], set()
    for p in paths:
        for item in read_path(Path(p), cfg, drops):
            if item["id"] in seen:
                drops.append(drop(item, "duplicate_id", f"id {item['id']!r} seen before"))
                continue
            seen.add(item["id"])
            out.append(item)
    return out

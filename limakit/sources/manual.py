"""Hand-written examples: YAML (a list, or ``{examples: [...]}``) or JSONL, in the Example format.

Records ending with an assistant turn are training examples; records ending with a user turn are
prompts (LIMA's group B test prompts). Multi-turn conversations are kept whole.

An example carries its own tags in ``meta.tags``; the option ``tags`` gives a tag to every example
of whole files (``tags: {safety: [refusals.yaml]}``), so a file of refusal examples needs no tag on
each record.

>>> examples = read_manual("configs/handwritten.yaml")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import yaml
from pydantic import Field

from limakit.core.config import Config
from limakit.core.errors import LimaError
from limakit.records.example import Example, read_examples
from limakit.sources.registry import TestPrompt


def read_manual(path: str | os.PathLike) -> Iterator[Example]:
    path = Path(path)
    if not path.exists():
        raise LimaError(f"{path}: hand-written examples file not found")
    if path.suffix.lower() not in (".yaml", ".yml"):
        for ex in read_examples(path, require_answer=None):
            ex.source = ex.source if ex.source != "unknown" else "manual"
            yield ex
        return
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise LimaError(f"{path}: not valid UTF-8 (byte offset {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise LimaError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if isinstance(data, dict) and "examples" in data:
        data = data["examples"]
    if not isinstance(data, list):
        raise LimaError(f"{path}: expected a list of examples (or a mapping with 'examples')")
    for i, obj in enumerate(data, start=1):
        try:
            ex = Example.from_dict(obj, require_answer=None)
        except ValueError as e:
            raise LimaError(f"{path}: example {i}: {e}") from None
        if ex.source == "unknown":
            ex.source = "manual"
        yield ex


class ManualConfig(Config):
    """Options of the hand-written files."""

    tags: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Tags given to every example of whole files: {tag: [file, ...]}, each file as "
        "listed in `manual`, e.g. {safety: [refusals.yaml]} for a file of safety examples.",
    )


def file_tags(paths: list[str], tags: dict[str, list[str]]) -> dict[Path, list[str]]:
    """The tags of each input file (resolved path -> tags); a tagged file that is not an input is
    an error naming it, not a tag that silently never applies.

    >>> file_tags(["a.yaml", "b.yaml"], {"safety": ["./b.yaml"]}) == {Path("b.yaml").resolve(): ["safety"]}
    True
    """
    inputs = {Path(p).resolve() for p in paths}
    out: dict[Path, list[str]] = {}
    for tag, files in tags.items():
        if not tag.strip():
            raise LimaError("manual_options.tags: a tag name is empty")
        for f in files:
            path = Path(f).resolve()
            if path not in inputs:
                raise LimaError(
                    f"manual_options.tags: {tag!r} names {f}, which is not among the manual "
                    f"inputs ({', '.join(paths) or 'none'})"
                )
            out.setdefault(path, []).append(tag)
    return out


def candidates(paths: list[str], ctx):
    """The registered source's reader: examples, and prompts without answers as test prompts."""
    by_file = file_tags(paths, ctx.options.tags if ctx.options is not None else {})
    for path in paths:
        extra = by_file.get(Path(path).resolve(), [])
        for ex in read_manual(path):
            if extra:
                ex.meta["tags"] = list(dict.fromkeys([*ex.tags, *extra]))
            yield ex if ex.answer is not None else TestPrompt(ex, counted=True)

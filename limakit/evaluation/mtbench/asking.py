"""MT-Bench's matches through limakit's one judge loop, each reply written as it arrives.

The loop (:func:`limakit.judging.runner.run_judgements`) brings the reply cache, the retries
and the rule that a reply is read before it is cached; here each match is asked once, as FastChat
asks (a reply without a verdict is kept as such, not asked again), and what a reply gives is
appended to FastChat's judgment file at once, so a killed run loses only the calls in flight.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from limakit.core.errors import LimaError
from limakit.evaluation.mtbench.matches import Match
from limakit.evaluation.summaries import MtCounts
from limakit.judging.cache import JudgeCache
from limakit.judging.runner import Outcome, run_judgements


def require_openai_judge(cfg) -> None:
    if cfg.backend != "openai":
        raise LimaError(
            "MT-Bench grading needs an OpenAI-compatible judge (backend: openai); a local model "
            "can serve as one through `lima serve`"
        )


@dataclass(frozen=True)
class JudgePrompt:
    """A FastChat judge prompt as the judge loop asks of it: its version keys the reply cache,
    and ``parse`` reads a reply's verdict (a label, or None) before the reply is cached."""

    version: str
    parse: Callable[[str], str | None]


M = TypeVar("M", bound=Match)


def ask_into(
    path: Path,
    matches: Sequence[M],
    parse: Callable[[str], str | None],
    cfg,
    out_dir: str | os.PathLike,
    on_reply: Callable[[IO[str], M, Outcome], None],
    what: str,
    counts: MtCounts,
) -> None:
    """Ask the judge for ``matches`` through the reply cache of ``out_dir``, with ``path`` open
    for appending: ``on_reply(file, match, outcome)`` writes what each reply gives as it arrives,
    its verdict read by ``parse``. Calls that failed for good (malformed replies included) are
    counted in ``counts`` (``errors``, ``first_error``) and write nothing, so a rerun asks
    again."""
    errors: list[str] = []
    prompts = {m.prompt["version"]: JudgePrompt(m.prompt["version"], parse) for m in matches}
    cache = JudgeCache(cfg.cache or Path(out_dir) / "cache.sqlite")
    try:
        with open(path, "a", encoding="utf-8") as f:

            def settle(i: int, o: Outcome) -> None:
                if o.error is not None:
                    errors.append(o.error)
                else:
                    on_reply(f, matches[i], o)

            run_judgements(
                [m.messages for m in matches],
                [prompts[m.prompt["version"]] for m in matches],
                cfg,
                cache,
                what,
                attempts=1,
                on_outcome=settle,
            )
    finally:
        cache.close()
    counts["errors"] = len(errors)
    counts["first_error"] = errors[0] if errors else None

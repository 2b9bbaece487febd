"""Run many judge calls through a backend, with the cache and the strict verdict parser.

Every call is looked up in the cache first. An unparseable reply is asked once more (a distinct
cache entry, so a rerun replays both attempts), then recorded as invalid; it is never dropped.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import asdict, dataclass, field

from limakit.evaluation.cache import JudgeCache, cache_key
from limakit.evaluation.config import JudgeConfig
from limakit.evaluation.judges.base import Reply
from limakit.evaluation.prompts import Prompt

ATTEMPTS = 2  # the first reply, and one retry when its verdict cannot be parsed


@dataclass
class Outcome:
    """The verdict of one judgement and everything it cost."""

    label: str | None = None
    raw: list[str] = field(default_factory=list)  # every attempt's reply text
    probs: dict[str, float] = field(default_factory=dict)
    calls: int = 0  # calls actually made (not served by the cache)
    cached: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _key(cfg: JudgeConfig, prompt: Prompt, messages: list[dict], attempt: int) -> str:
    return cache_key(
        {
            "backend": cfg.backend,
            "model": cfg.model,
            "prompt": prompt.version,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens if cfg.backend == "openai" else None,
            "messages": messages,
            "attempt": attempt,
        }
    )


def _absorb(out: Outcome, reply: Reply, prompt: Prompt) -> bool:
    """Add one reply to the outcome; True when it settled the verdict."""
    out.raw.append(reply.text)
    out.probs = reply.probs or out.probs
    out.retries += reply.retries
    out.prompt_tokens += reply.prompt_tokens
    out.completion_tokens += reply.completion_tokens
    out.label = prompt.parse(reply.text)
    return out.label is not None


def progress_bar(total: int, what: str):
    """A rich progress bar on stderr for ``total`` judge calls (or grades), and its task id."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=not sys.stderr.isatty(),
    )
    return bar, bar.add_task(what, total=total)


async def _run_openai(
    requests: list[list[dict]], prompt: Prompt, cfg: JudgeConfig, cache: JudgeCache, what: str
) -> list[Outcome]:
    from limakit.evaluation.judges.openai import complete, make_client

    client = make_client(cfg)
    gate = asyncio.Semaphore(cfg.concurrency)
    outcomes = [Outcome() for _ in requests]
    bar, task = progress_bar(len(requests), what)

    async def one(i: int) -> None:
        out = outcomes[i]
        for attempt in range(ATTEMPTS):
            key = _key(cfg, prompt, requests[i], attempt)
            hit = cache.get(key)
            if hit is not None:
                out.cached += 1
                reply = Reply(**hit)
                reply.retries = 0
                reply.prompt_tokens = reply.completion_tokens = 0  # paid in an earlier run
            else:
                async with gate:
                    reply = await complete(client, cfg, requests[i])
                out.calls += 1 + reply.retries
                if reply.error:
                    out.error = reply.error
                    out.retries += reply.retries
                    break  # not cached: a rerun tries again
                cache.put(key, {**asdict(reply), "retries": 0})
            if _absorb(out, reply, prompt):
                break
        bar.advance(task)

    with bar:
        try:
            await asyncio.gather(*(one(i) for i in range(len(requests))))
        finally:
            await client.close()
    return outcomes


def _run_local(
    requests: list[list[dict]], prompt: Prompt, cfg: JudgeConfig, cache: JudgeCache, what: str
) -> list[Outcome]:
    from limakit.evaluation.judges.local import LocalJudge

    judge = None  # loaded only when some call misses the cache
    outcomes = [Outcome() for _ in requests]
    replies: dict[int, Reply] = {}
    misses = []
    for i, messages in enumerate(requests):
        hit = cache.get(_key(cfg, prompt, messages, 0))
        if hit is None:
            misses.append(i)
        else:
            outcomes[i].cached += 1
            replies[i] = Reply(**hit)
            replies[i].prompt_tokens = 0
    bar, task = progress_bar(len(requests), what)
    with bar:
        bar.advance(task, len(replies))
        # Several judgements per forward pass; similar lengths together to pad little.
        misses.sort(key=lambda i: sum(len(m["content"]) for m in requests[i]))
        for s in range(0, len(misses), cfg.batch_size):
            batch = misses[s : s + cfg.batch_size]
            judge = judge or LocalJudge(cfg)
            for i, reply in zip(
                batch, judge.choose_batch([requests[i] for i in batch], prompt.labels)
            ):
                outcomes[i].calls += 1
                cache.put(_key(cfg, prompt, requests[i], 0), asdict(reply))
                replies[i] = reply
            bar.advance(task, len(batch))
    for i, out in enumerate(outcomes):
        _absorb(out, replies[i], prompt)
    return outcomes


def run_judgements(
    requests: list[list[dict]],
    prompt: Prompt,
    cfg: JudgeConfig,
    cache: JudgeCache,
    what: str = "judging",
) -> list[Outcome]:
    """Judge each message list; returns one :class:`Outcome` per request, in order."""
    if not requests:
        return []
    if cfg.backend == "local":
        return _run_local(requests, prompt, cfg, cache, what)
    return asyncio.run(_run_openai(requests, prompt, cfg, cache, what))

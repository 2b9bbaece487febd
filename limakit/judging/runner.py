"""Run many judge calls through a backend, with the cache and a strict verdict parser.

This is the one loop every judge path goes through (``lima judge``'s protocols, MT-Bench, curation
scores, back-translation ratings). Every call is looked up in the cache first. A reply is read
(its verdict parsed) before it is cached; a failed or malformed call (the backend's ``error``:
content that is not text, say) is never cached, so a rerun asks again. An unparseable verdict is
asked once more (a distinct cache entry, so a rerun replays both attempts), then recorded as
invalid; it is never dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

from limakit.core.console import progress
from limakit.judging.cache import JudgeCache, cache_key
from limakit.judging.config import JudgeConfig
from limakit.judging.reply import Reply

ATTEMPTS = 2  # the first reply, and one retry when its verdict cannot be parsed


class Asked(Protocol):
    """What the loop asks of a prompt: its version (in the cache key) and its verdict parser."""

    @property
    def version(self) -> str: ...

    def parse(self, text: str) -> str | None: ...


@runtime_checkable
class Labelled(Asked, Protocol):
    """A prompt the local backend can ask: it reads the probabilities of these labels."""

    @property
    def labels(self) -> tuple[str, ...]: ...


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


def _key(cfg: JudgeConfig, prompt: Asked, messages: list[dict], attempt: int) -> str:
    # MT-Bench's keys have the same parts, so its earlier caches are read as they are.
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


def _absorb(out: Outcome, reply: Reply, prompt: Asked) -> bool:
    """Add one reply to the outcome; True when it settled the verdict."""
    out.raw.append(reply.text)
    out.probs = reply.probs or out.probs
    out.retries += reply.retries
    out.prompt_tokens += reply.prompt_tokens
    out.completion_tokens += reply.completion_tokens
    out.label = prompt.parse(reply.text)
    return out.label is not None


OnOutcome = Callable[[int, Outcome], None]


async def _run_openai(
    requests: list[list[dict]],
    prompts: Sequence[Asked],
    cfg: JudgeConfig,
    cache: JudgeCache,
    what: str,
    attempts: int,
    on_outcome: OnOutcome | None,
) -> list[Outcome]:
    from limakit.judging.openai import complete, make_client

    client = make_client(cfg)
    gate = asyncio.Semaphore(cfg.concurrency)
    outcomes = [Outcome() for _ in requests]
    bar = progress(what, len(requests))

    async def one(i: int) -> None:
        out, prompt = outcomes[i], prompts[i]
        for attempt in range(attempts):
            key = _key(cfg, prompt, requests[i], attempt)
            reply = Reply.from_cache(cache.get(key))
            fresh = reply is None
            if reply is None:
                async with gate:
                    reply = await complete(client, cfg, requests[i])
                out.calls += 1 + reply.retries
                if reply.error:
                    out.error = reply.error
                    out.retries += reply.retries
                    break  # not cached: a rerun tries again
            else:
                out.cached += 1
            settled = _absorb(out, reply, prompt)  # read before anything of it is cached
            if fresh:
                cache.put(key, reply.cached())
            if settled:
                break
        if on_outcome is not None:
            on_outcome(i, out)
        bar.advance()

    with bar:
        try:
            await asyncio.gather(*(one(i) for i in range(len(requests))))
        finally:
            await client.close()
    return outcomes


def _run_local(
    requests: list[list[dict]], prompt: Labelled, cfg: JudgeConfig, cache: JudgeCache, what: str
) -> list[Outcome]:
    from limakit.judging.local import LocalJudge

    judge = None  # loaded only when some call misses the cache
    outcomes = [Outcome() for _ in requests]
    misses = []
    for i, messages in enumerate(requests):
        hit = Reply.from_cache(cache.get(_key(cfg, prompt, messages, 0)))
        if hit is None:
            misses.append(i)
        else:
            outcomes[i].cached += 1
            _absorb(outcomes[i], hit, prompt)
    with progress(what, len(requests)) as bar:
        bar.advance(len(requests) - len(misses))
        # Several judgements per forward pass; similar lengths together to pad little.
        misses.sort(key=lambda i: sum(len(m["content"]) for m in requests[i]))
        for s in range(0, len(misses), cfg.batch_size):
            batch = misses[s : s + cfg.batch_size]
            judge = judge or LocalJudge.from_config(cfg)
            for i, reply in zip(
                batch, judge.choose_batch([requests[i] for i in batch], prompt.labels)
            ):
                outcomes[i].calls += 1
                _absorb(outcomes[i], reply, prompt)
                cache.put(_key(cfg, prompt, requests[i], 0), reply.cached())
            bar.advance(len(batch))
    return outcomes


def run_judgements(
    requests: list[list[dict]],
    prompt: Asked | list[Asked],
    cfg: JudgeConfig,
    cache: JudgeCache,
    what: str = "judging",
    *,
    attempts: int = ATTEMPTS,
    on_outcome: OnOutcome | None = None,
) -> list[Outcome]:
    """Judge each message list; returns one :class:`Outcome` per request, in order.

    ``prompt``: the prompt of every request, or a list with each request's own (MT-Bench's
    prompts differ by category and turn; the ``openai`` backend only). ``attempts``: how many
    times a reply without a verdict is asked (1: never again, as FastChat). ``on_outcome(i,
    outcome)`` is called as each request settles, failed ones included, so that a caller can
    append it to a file at once.
    """
    if not requests:
        return []
    if cfg.backend == "local":
        if isinstance(prompt, list):
            raise ValueError("the local judge reads one prompt's labels for every request")
        if not isinstance(prompt, Labelled):
            raise ValueError("the local judge reads a prompt's labels; this prompt names none")
        outcomes = _run_local(requests, prompt, cfg, cache, what)
        for i, out in enumerate(outcomes):
            if on_outcome is not None:
                on_outcome(i, out)
        return outcomes
    prompts = prompt if isinstance(prompt, list) else [prompt] * len(requests)
    return asyncio.run(_run_openai(requests, prompts, cfg, cache, what, attempts, on_outcome))

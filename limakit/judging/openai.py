"""The ``openai`` backend: any OpenAI-compatible chat endpoint through the official client.

Retries are ours, not the client's, so that a 429's Retry-After is honoured exactly, 5xx and
timeouts back off exponentially, and every retry is counted. The API key is read from the variable
named by ``api_key_env`` and goes nowhere else.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from typing import TYPE_CHECKING, Any, cast

import openai

from limakit.core.console import note
from limakit.core.errors import LimaError
from limakit.judging.config import JudgeConfig
from limakit.judging.reply import Reply

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

MAX_WAIT = 120.0  # never sleep longer than this on one Retry-After


def make_client(cfg: JudgeConfig) -> openai.AsyncOpenAI:
    key = os.environ.get(cfg.api_key_env)
    if not key:
        # Local servers (vLLM, llama.cpp, Ollama, `lima serve`) accept any key; real APIs answer
        # 401, which is reported below with the variable's name.
        note(f"note: ${cfg.api_key_env} is not set; sending a placeholder key")
        key = "not-set"
    return openai.AsyncOpenAI(
        base_url=cfg.base_url, api_key=key, timeout=cfg.timeout, max_retries=0
    )


def retry_after(response: Any) -> float | None:  # the client's HTTP response, or None
    """Seconds a server asked us to wait (``Retry-After`` as seconds or an HTTP date)."""
    if response is None:
        return None
    headers = response.headers
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def backoff(attempt: int) -> float:
    # Exponential with jitter so that 16 workers hit by the same outage do not retry in lockstep.
    return float(min(0.5 * 2**attempt, 30.0) * random.uniform(0.5, 1.0))


async def complete(client: openai.AsyncOpenAI, cfg: JudgeConfig, messages: list[dict]) -> Reply:
    """One judge reply, retrying 429 / 5xx / timeouts / unreadable bodies up to
    ``cfg.max_retries`` times."""
    retries = 0
    last_error = ""
    for attempt in range(cfg.max_retries + 1):
        try:
            resp = await client.chat.completions.create(
                model=cfg.model,
                # role/content dicts, as the prompts build them
                messages=cast("list[ChatCompletionMessageParam]", messages),
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
            )
        except openai.RateLimitError as e:
            wait = retry_after(e.response)
            wait = backoff(attempt) if wait is None else min(wait, MAX_WAIT)
            last_error = "429 rate limited"
        except openai.APITimeoutError:
            wait, last_error = backoff(attempt), f"timeout after {cfg.timeout:g}s"
        except openai.APIConnectionError as e:
            wait, last_error = backoff(attempt), f"connection error: {e}"
        except (json.JSONDecodeError, openai.APIResponseValidationError) as e:
            # A 200 whose body is cut off or not JSON (a faulty proxy, a server killed mid-reply)
            # is a failed call like any other: retried, then recorded as an error.
            wait, last_error = backoff(attempt), f"reply body is not valid JSON ({e})"
        except openai.APIStatusError as e:
            if e.status_code in (401, 403):
                raise LimaError(
                    f"judge endpoint {cfg.base_url} refused the key (HTTP {e.status_code}); "
                    f"set ${cfg.api_key_env}"
                ) from None
            if e.status_code == 404:
                raise LimaError(
                    f"judge endpoint {cfg.base_url}: model {cfg.model!r} or route not found (404)"
                ) from None
            if e.status_code < 500 and e.status_code != 408:
                return Reply(error=f"HTTP {e.status_code}: {str(e)[:200]}", retries=retries)
            wait = retry_after(e.response) or backoff(attempt)
            last_error = f"HTTP {e.status_code}"
        else:
            if not isinstance(resp, str):
                return _read(resp, retries)
            # The client hands back a 200 body it could not read as JSON (an HTML page from a
            # proxy, a login wall) as text: a failed call like a cut-off body, retried.
            wait, last_error = backoff(attempt), f"reply body is not a JSON object ({resp[:80]!r})"
        if attempt == cfg.max_retries:
            break
        retries += 1
        await asyncio.sleep(wait)
    return Reply(error=f"gave up after {retries} retries: {last_error}", retries=retries)


def _read(resp: Any, retries: int) -> Reply:  # a ChatCompletion, or a server's malformed body
    """The reply in a chat completion; a malformed one (no ``choices[0].message``, content that
    is not text, bad token counts) is an error, so that nothing of it is cached or parsed.

    Content that is not a string (a number, a list, null) is no verdict text at all; it is
    counted as a failed call, not as an unparsable verdict, and a rerun asks again.
    """
    try:
        content = resp.choices[0].message.content
    except (AttributeError, IndexError, TypeError):
        return Reply(error="malformed response (no choices[0].message)", retries=retries)
    if not isinstance(content, str):
        shown = json.dumps(content, default=str)[:40]
        return Reply(
            error=f"malformed response (message content is {shown}, not text)", retries=retries
        )
    counts = _usage(getattr(resp, "usage", None))
    if isinstance(counts, str):
        return Reply(error=f"malformed response ({counts})", retries=retries)
    return Reply(
        text=content, prompt_tokens=counts[0], completion_tokens=counts[1], retries=retries
    )


def _usage(usage: object) -> tuple[int, int] | str:
    """The reply's (prompt, completion) token counts, or what is wrong with them.

    A server that sends no usage (some local ones) is counted as 0; a count that is not a whole
    number of tokens >= 0 makes the reply malformed, like one without ``choices[0].message``.
    """
    if isinstance(usage, str | int | float | list):  # the client keeps what it cannot read
        return f"usage is {str(usage)[:40]!r}, not an object of token counts"
    counts = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = getattr(usage, name, None) if usage is not None else None
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"usage.{name} is {str(value)[:40]!r}, not a token count"
        counts.append(value)
    return counts[0], counts[1]

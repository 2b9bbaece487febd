"""``lima chat``: a terminal conversation with multi-turn history and streamed tokens.

Commands: ``/reset`` forgets the conversation, ``/exit`` (or end of input) quits.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from limakit.generation.config import DecodeConfig
from limakit.generation.engine import Engine, Request
from limakit.generation.sampler import generator_for
from limakit.generation.streaming import TextStream
from limakit.records.example import Message

if TYPE_CHECKING:
    from limakit.models import LoadedModel


def chat_loop(
    loaded: LoadedModel,
    *,
    config: DecodeConfig | None = None,
    system: str | None = None,
    seed: int = 0,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    cuda_graphs: bool | None = None,
) -> int:
    """Read user turns from ``stdin``, stream answers to ``stdout``; returns the number of turns.

    >>> chat_loop(load_model_for("smollm2-135m"), stdin=io.StringIO("Hi\\n/exit\\n"))  # doctest: +SKIP
    """
    from limakit.generation.batch import context_length
    from limakit.records.template import render_prompt

    config = config or DecodeConfig()
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    tokenizer = loaded.tokenizer
    engine = Engine(loaded, max_batch=1, cuda_graphs=cuda_graphs)
    limit = context_length(loaded.model)
    history: list[Message] = [Message("system", system)] if system else []
    interactive = stdin.isatty()
    turns = 0

    def say(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    say("lima chat - /reset clears the conversation, /exit quits\n")
    while True:
        if interactive:
            say("\n> ")
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history = history[:1] if system else []
            say("(conversation cleared)\n")
            continue
        history.append(Message("user", text))
        prompt = render_prompt(history, tokenizer, loaded.template)
        while len(prompt) >= limit - 1 and len(history) > 2:  # drop the oldest exchange to fit
            history = history[:1] + history[3:] if system else history[2:]
            prompt = render_prompt(history, tokenizer, loaded.template)
        stream = TextStream(tokenizer)
        req = Request(
            prompt_ids=prompt,
            max_new_tokens=max(1, min(config.max_new_tokens, limit - len(prompt))),
            temperature=config.temperature,
            top_p=config.top_p,
            repetition_penalty=config.repetition_penalty,
            generator=generator_for(seed, turns),
            on_token=lambda _r, t, s=stream: say(s.push(t)),
        )
        say("assistant: ")
        engine.run([req])
        say(stream.finish() + "\n")
        answer = stream.text.strip()
        history.append(Message("assistant", answer or "(no answer)"))
        turns += 1
    return turns

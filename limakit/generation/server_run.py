"""The engine sequences of one ``lima serve`` request, and their text as events.

A request becomes ``n`` engine sequences per prompt, numbered prompt by prompt; they form one group
in the engine's queue, so they take turns for batch slots with other requests' sequences. Tokens
arrive on the engine's thread and are handed to the event loop, where each choice's text is
decoded incrementally and cut at the request's stop strings or the chat format's markers.
"""

from __future__ import annotations

import asyncio
import secrets

from limakit.generation.engine import Request
from limakit.generation.logprobs import TokenLogprob
from limakit.generation.sampler import generator_for
from limakit.generation.streaming import TextStream


class ServerRun:
    """The engine sequences of one request (``n`` per prompt, numbered prompt by prompt) and
    their text, as events."""

    def __init__(  # noqa: PLR0913 - one request's fields, as its OpenAI body gives them
        self,
        engine,
        tokenizer,
        prompts: list[list[int]],
        body,
        decoding,
        max_tokens: int,
        arrived: float,
        *,
        logprobs: int | None = None,
        prompt_logprobs: int | None = None,
        markers: tuple[str, ...] = (),
    ):
        self.engine = engine
        self.arrived = arrived
        self.queue: asyncio.Queue = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        seed = body.seed if body.seed is not None else secrets.randbits(62)
        self.reqs = [
            Request(
                prompt_ids=prompt,
                max_new_tokens=max_tokens,
                temperature=decoding.temperature,
                top_p=decoding.top_p,
                repetition_penalty=decoding.repetition_penalty,
                # A prompt's choices draw the same whether it is sent alone or in a list.
                generator=generator_for(seed, j),
                tag=i * body.n + j,
                group=self,  # this request's sequences take turns with other requests'
                on_token=self._put_token,
                on_finish=self._put_end,
                logprobs=logprobs,
                prompt_logprobs=prompt_logprobs,
            )
            for i, prompt in enumerate(prompts)
            for j in range(body.n)
        ]
        self.streams = [TextStream(tokenizer, body.stops, markers) for _ in self.reqs]
        # Per choice, the (token id, score) of the tokens whose text made it into the answer.
        self.kept: list[list[tuple[int, TokenLogprob]]] = [[] for _ in self.reqs]

    # Called from the engine's thread: hand over to the event loop.
    def _put_token(self, req: Request, token: int) -> None:
        score = req.token_logprobs[-1] if req.logprobs is not None else None
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (req.tag, token, score))

    def _put_end(self, req: Request) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (req.tag, None, None))

    @property
    def completion_tokens(self) -> int:
        return sum(len(r.output_ids) for r in self.reqs)

    @property
    def queue_time(self) -> float | None:
        """Seconds from arrival until the last sequence got a batch slot (None before that)."""
        admitted = [r.admitted for r in self.reqs]
        if any(a is None for a in admitted):
            return None
        return max(0.0, max(admitted) - self.arrived)

    async def events(self):
        """(index, text delta, finish reason or None, scored tokens) until every choice has
        finished; a caller that stops listening (a client gone) cancels the sequences still
        running. The scored tokens are the (id, score) of the tokens that text came from (with
        logprobs asked for): those whose text falls after a stop string are left out."""
        left = len(self.reqs)
        pending: list[list[tuple[int, int, TokenLogprob]]] = [[] for _ in self.reqs]

        def release(i: int) -> list[tuple[int, TokenLogprob]]:
            stream = self.streams[i]
            out = [(t, s) for at, t, s in pending[i] if not stream.stopped or at < len(stream.text)]
            pending[i] = []
            self.kept[i] += out
            return out

        for r in self.reqs:
            self.engine.add(r)
        try:
            while left:
                i, tok, score = await self.queue.get()
                stream, req = self.streams[i], self.reqs[i]
                if tok is not None:
                    at = len(stream.text)
                    delta = stream.push(tok)
                    if score is not None:
                        pending[i].append((at, tok, score))
                    if stream.stopped:
                        req.cancelled = True  # the engine drops it at its next step
                    if delta:
                        yield i, delta, None, release(i)
                    continue
                left -= 1
                tail = stream.finish()
                if tail or pending[i]:
                    yield i, tail, None, release(i)
                # A template marker ends the answer like the end of turn: "stop" on the wire.
                ended = stream.stopped or req.finish_reason in ("eot", "marker")
                reason = "stop" if ended else "length"
                if req.finish_reason and req.finish_reason.startswith("error"):
                    reason = "error"
                yield i, "", reason, []
        finally:
            for r in self.reqs:
                if not r.done:
                    r.cancelled = True  # the client went away: free the slots
            self.engine.wakeup.set()

"""An OpenAI-compatible chat server over the continuous-batching engine (FastAPI + uvicorn).

``POST /v1/chat/completions`` (plain or ``stream: true`` server-sent events) and ``GET /v1/models``.
Concurrent requests share one engine running in a background thread, so they are batched together;
each choice is one engine sequence. Errors use OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` with a 4xx status.

>>> app = create_app(model, tokenizer, model_name="lima")  # doctest: +SKIP
>>> uvicorn.run(app, port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, StreamingResponse

from limakit.example import Message, validate_messages
from limakit.generation.batch import context_length
from limakit.generation.config import DecodeConfig
from limakit.generation.engine import Engine, Request
from limakit.generation.sampler import generator_for
from limakit.generation.streaming import TextStream


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        kind = "authentication_error" if self.status == 401 else "invalid_request_error"
        return {
            "error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        }


class EngineWorker:
    """Runs ``engine.step()`` in a daemon thread whenever there is work."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="lima-engine", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        e = self.engine
        while not self.stopping:
            e.wakeup.clear()
            if not e.busy:
                e.wakeup.wait(0.2)
                continue
            try:
                e.step()
            except Exception as exc:  # noqa: BLE001 - keep serving; fail only the sequences in flight
                e.fail_all(f"error: {exc}")

    def stop(self) -> None:
        self.stopping = True
        self.engine.wakeup.set()


def _number(body: dict, key: str, kind, lo, hi, default):
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ApiError(400, f"'{key}' must be a{'n integer' if kind is int else ' number'}", key)
    if not lo <= value <= hi:
        raise ApiError(400, f"'{key}' must be between {lo} and {hi} (got {value})", key)
    return kind(value)


def _messages(body: dict) -> list[Message]:
    raw = body.get("messages")
    if raw is None:
        raise ApiError(400, "missing required field 'messages'", "messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "'messages' must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ApiError(400, f"messages[{i}] needs 'role' and 'content'", f"messages[{i}]")
        content = m["content"]
        if isinstance(content, list):  # content parts: keep the text ones
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise ApiError(
                    400, f"messages[{i}]: only text content is supported", f"messages[{i}]"
                )
            content = "".join(str(p.get("text", "")) for p in content)
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{i}].content must be a string", f"messages[{i}].content")
        role = m["role"]
        if role == "developer":  # newer clients' name for the system role
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise ApiError(
                400,
                f"messages[{i}]: unsupported role {role!r} (system, user, assistant)",
                f"messages[{i}].role",
            )
        out.append(Message(role, content))
    try:
        validate_messages(out, require_answer=False)
    except ValueError as e:
        raise ApiError(400, str(e), "messages") from None
    return out


def create_app(
    model,
    tokenizer,
    *,
    model_name: str = "lima",
    api_key: str | None = None,
    config: DecodeConfig | None = None,
    max_batch: int = 16,
):
    """The FastAPI app; the engine thread starts now and stops with the app's shutdown."""
    from limakit.template import render_prompt

    config = config or DecodeConfig()
    engine = Engine(model, tokenizer, max_batch=max_batch)
    worker = EngineWorker(engine)
    limit = context_length(model)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        worker.stop()

    app = FastAPI(title="limakit", lifespan=lifespan)
    app.state.engine, app.state.worker = engine, worker

    def check_key(http: HttpRequest) -> None:
        if api_key is None:
            return
        given = http.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise ApiError(401, "invalid or missing API key", code="invalid_api_key")

    @app.exception_handler(ApiError)
    async def api_error(_http, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.get("/v1/models")
    async def models(http: HttpRequest):
        check_key(http)
        card = {"id": model_name, "object": "model", "created": 0, "owned_by": "limakit"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat(http: HttpRequest):
        check_key(http)
        try:
            body = await http.json()
        except ValueError:
            raise ApiError(400, "the request body must be JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        if not body.get("model"):
            raise ApiError(400, "missing required field 'model'", "model")
        messages = _messages(body)
        temperature = _number(body, "temperature", float, 0.0, 2.0, config.temperature)
        top_p = _number(body, "top_p", float, 0.0, 1.0, config.top_p)
        penalty = _number(body, "repetition_penalty", float, 0.01, 10.0, config.repetition_penalty)
        n = _number(body, "n", int, 1, 16, 1)
        seed = _number(body, "seed", int, -(2**63), 2**63 - 1, None)
        stop = body.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        if stop is not None and (
            not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop)
        ):
            raise ApiError(400, "'stop' must be a string or a list of up to 4 strings", "stop")
        prompt = render_prompt(messages, tokenizer)
        room = limit - len(prompt)
        key = (
            "max_completion_tokens"
            if body.get("max_completion_tokens") is not None
            else "max_tokens"
        )
        max_tokens = _number(body, key, int, 1, 10**9, None)
        if max_tokens is None:
            max_tokens = min(config.max_new_tokens, room)
        if max_tokens > room:
            raise ApiError(
                400,
                f"this model's maximum context length is {limit} tokens; the messages take "
                f"{len(prompt)} and {key} asks for {max_tokens}",
                key,
                "context_length_exceeded",
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        if seed is None:
            seed = secrets.randbits(62)
        reqs = []
        for i in range(n):
            req = Request(
                prompt_ids=prompt,
                max_new_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                repetition_penalty=penalty,
                generator=generator_for(seed, i),
                tag=i,
                on_token=lambda r, t: loop.call_soon_threadsafe(queue.put_nowait, (r.tag, t)),
                on_finish=lambda r: loop.call_soon_threadsafe(queue.put_nowait, (r.tag, None)),
            )
            reqs.append(req)
        streams = [TextStream(tokenizer, stop) for _ in range(n)]
        cid = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())

        async def events():
            """(index, text delta, finish reason or None) until every choice has finished."""
            left = n
            for r in reqs:
                engine.add(r)
            try:
                while left:
                    i, tok = await queue.get()
                    if tok is not None:
                        delta = streams[i].push(tok)
                        if streams[i].stopped:
                            reqs[i].cancelled = True  # the engine drops it at its next step
                        if delta:
                            yield i, delta, None
                        continue
                    left -= 1
                    s = streams[i]
                    tail = s.finish()
                    if tail:
                        yield i, tail, None
                    reason = "stop" if s.stopped or reqs[i].finish_reason == "eot" else "length"
                    if reqs[i].finish_reason and reqs[i].finish_reason.startswith("error"):
                        reason = "error"
                    yield i, "", reason
            finally:
                for r in reqs:
                    r.cancelled = r.cancelled or not r.done  # client went away: free the slots

        def usage() -> dict:
            completion = sum(len(r.output_ids) for r in reqs)
            return {
                "prompt_tokens": len(prompt),
                "completion_tokens": completion,
                "total_tokens": len(prompt) + completion,
            }

        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

            def chunk(choices, extra=None) -> str:
                obj = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model_name,
                    "choices": choices,
                    **(extra or {}),
                }
                return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

            async def sse():
                for i in range(n):
                    yield chunk(
                        [
                            {
                                "index": i,
                                "delta": {"role": "assistant", "content": ""},
                                "finish_reason": None,
                            }
                        ]
                    )
                async for i, delta, reason in events():
                    yield chunk(
                        [
                            {
                                "index": i,
                                "delta": {"content": delta} if delta else {},
                                "finish_reason": reason,
                            }
                        ]
                    )
                if include_usage:
                    yield chunk([], {"usage": usage()})
                yield "data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream")

        texts, reasons = [""] * n, [None] * n
        async for i, delta, reason in events():
            texts[i] += delta
            reasons[i] = reason or reasons[i]
        if "error" in reasons:
            raise ApiError(500, "generation failed")
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": texts[i]},
                "finish_reason": reasons[i],
                "logprobs": None,
            }
            for i in range(n)
        ]
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model_name,
            "choices": choices,
            "usage": usage(),
        }

    return app

"""An OpenAI-compatible chat server over the continuous-batching engine (FastAPI + uvicorn).

``POST /v1/chat/completions`` (plain or ``stream: true`` server-sent events) and ``GET /v1/models``.
Concurrent requests share one engine running in a background thread, so they are batched together;
each choice is one engine sequence. Requests are validated by FastAPI against
:class:`~limakit.generation.api_models.ChatRequest`; every error has OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``: 400 for a bad request, 401 for a wrong key,
404 for an unknown model, 413 for a body over ``max_body_bytes``, 5xx (``server_error``) for a
fault of ours. Prompts are tokenised in a worker thread, so a huge one never stalls other clients.

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

from fastapi import Depends, FastAPI
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from limakit.asgi import BodyLimit
from limakit.example import Message, validate_messages
from limakit.generation.api_models import ChatRequest, Completion, error_body
from limakit.generation.batch import context_length
from limakit.generation.config import DecodeConfig
from limakit.generation.engine import Engine, Request
from limakit.generation.sampler import generator_for
from limakit.generation.streaming import TextStream

MAX_BODY_BYTES = 8 * 2**20  # far above any context's worth of text, far below a memory problem


class ApiError(Exception):
    """An error answered in OpenAI's shape; its type follows from the status."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    @property
    def kind(self) -> str:
        if self.status >= 500:
            return "server_error"
        return "authentication_error" if self.status == 401 else "invalid_request_error"

    def response(self) -> JSONResponse:
        body = error_body(self.message, self.kind, self.param, self.code)
        return JSONResponse(body, status_code=self.status)


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


def _too_large() -> ApiError:
    return ApiError(
        413, "the request body is larger than this server accepts", code="request_too_large"
    )


def _param(loc: tuple) -> str | None:
    """``("body", "messages", 0, "role")`` -> ``"messages[0].role"``; None for the body itself."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or None


def _validation_error(exc: RequestValidationError) -> ApiError:
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return ApiError(400, f"the request body is not valid JSON ({first.get('msg')})")
    param = _param(tuple(first.get("loc", ())))
    if param is None and first.get("type") in ("model_attributes_type", "dict_type", "missing"):
        # Also what a body without ``Content-Type: application/json`` gets: it is not parsed.
        return ApiError(
            400, "the request body must be a JSON object sent as Content-Type: application/json"
        )
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return ApiError(400, f"{param}: {msg}" if param else f"the request body: {msg}", param)


def _install_errors(app: FastAPI) -> None:
    """One place that turns every failure into OpenAI's error shape."""

    @app.exception_handler(ApiError)
    async def api_error(_http, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_http, exc: RequestValidationError):
        return _validation_error(exc).response()  # 400, as OpenAI answers (not FastAPI's 422)

    @app.exception_handler(HTTPException)
    async def http_error(_http, exc: HTTPException):
        if exc.status_code == 413:
            return _too_large().response()
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return ApiError(exc.status_code, str(exc.detail), code=code).response()

    @app.exception_handler(Exception)
    async def fault(_http, exc: Exception):
        return ApiError(500, f"internal server error ({type(exc).__name__})").response()


def create_app(
    model,
    tokenizer,
    *,
    model_name: str = "lima",
    api_key: str | None = None,
    config: DecodeConfig | None = None,
    max_batch: int = 16,
    max_body_bytes: int = MAX_BODY_BYTES,
    cuda_graphs: bool | None = None,
):
    """The FastAPI app; the engine thread starts now and stops with the app's shutdown.

    With ``api_key`` every route (the API docs too) needs ``Authorization: Bearer KEY``.
    """
    from limakit.template import render_prompt

    config = config or DecodeConfig()
    # Adds the EOT token to the tokenizer here, once, if it lacks it: later renders (in worker
    # threads) then only read the tokenizer.
    render_prompt([Message("user", "x")], tokenizer)
    engine = Engine(model, tokenizer, max_batch=max_batch, cuda_graphs=cuda_graphs)
    worker = EngineWorker(engine)
    limit = context_length(model)

    def check_key(http: HttpRequest) -> None:
        if api_key is None:
            return
        given = http.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise ApiError(401, "invalid or missing API key", code="invalid_api_key")

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        worker.stop()

    app = FastAPI(
        title="limakit",
        lifespan=lifespan,
        dependencies=[Depends(check_key)],
        docs_url=None,  # served below, behind the key
        redoc_url=None,
        openapi_url=None,
    )
    app.state.engine, app.state.worker = engine, worker
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, too_large=_too_large().response())
    _install_errors(app)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi():
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="limakit API")

    @app.get("/v1/models")
    async def models():
        card = {"id": model_name, "object": "model", "created": 0, "owned_by": "limakit"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, http: HttpRequest):
        if body.model != model_name:
            raise ApiError(
                404,
                f"the model {body.model!r} does not exist here (this server has {model_name!r})",
                "model",
                "model_not_found",
            )
        prompt, decoding, max_tokens = await _admit(body, tokenizer, config, limit)
        run = _Run(engine, tokenizer, prompt, body, decoding, max_tokens)
        completion = Completion(
            "chatcmpl-" + secrets.token_hex(12),
            int(time.time()),
            model_name,
            n=body.n,
            prompt_tokens=len(prompt),
        )
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_sse(run, completion, usage), media_type="text/event-stream")
        return await _whole(run, completion, http)

    return app


async def _admit(
    body: ChatRequest, tokenizer, defaults: DecodeConfig, limit: int
) -> tuple[list[int], DecodeConfig, int]:
    """A request's prompt ids, decoding and token budget; a 400 when it cannot be answered."""
    from limakit.template import render_prompt

    messages = [m.to_message() for m in body.messages]
    try:
        validate_messages(messages, require_answer=False)
    except ValueError as e:
        raise ApiError(400, str(e), "messages") from None
    # Tokenising a long prompt takes a while: never on the event loop.
    prompt = await asyncio.to_thread(render_prompt, messages, tokenizer)
    decoding = _decoding(defaults, body)
    key, max_tokens = body.token_limit
    room = limit - len(prompt)
    if room < 1 or (max_tokens is not None and max_tokens > room):
        # Without max_tokens, a prompt that fills the context is refused too (not answered
        # with nothing).
        too_long = room < 1 or max_tokens is None
        raise ApiError(
            400,
            f"this model's maximum context length is {limit} tokens; the messages take "
            f"{len(prompt)}" + ("" if too_long else f" and {key} asks for {max_tokens}"),
            "messages" if too_long else key,
            "context_length_exceeded",
        )
    if max_tokens is None:
        max_tokens = min(decoding.max_new_tokens, room)
    return prompt, decoding, max_tokens


def _decoding(defaults: DecodeConfig, body: ChatRequest) -> DecodeConfig:
    """The server's decoding with the request's own fields on top (validated like any config)."""
    fields = ("temperature", "top_p", "repetition_penalty")
    given = {k: getattr(body, k) for k in fields if getattr(body, k) is not None}
    return DecodeConfig(**{**defaults.model_dump(), **given})


class _Run:
    """The engine sequences of one request (one per choice) and their text, as events."""

    def __init__(self, engine, tokenizer, prompt, body: ChatRequest, decoding, max_tokens: int):
        self.engine = engine
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
                generator=generator_for(seed, i),
                tag=i,
                on_token=self._put_token,
                on_finish=self._put_end,
            )
            for i in range(body.n)
        ]
        self.streams = [TextStream(tokenizer, body.stops) for _ in range(body.n)]

    # Called from the engine's thread: hand over to the event loop.
    def _put_token(self, req: Request, token: int) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (req.tag, token))

    def _put_end(self, req: Request) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (req.tag, None))

    @property
    def completion_tokens(self) -> int:
        return sum(len(r.output_ids) for r in self.reqs)

    async def events(self):
        """(index, text delta, finish reason or None) until every choice has finished; a caller
        that stops listening (a client gone) cancels the sequences still running."""
        left = len(self.reqs)
        for r in self.reqs:
            self.engine.add(r)
        try:
            while left:
                i, tok = await self.queue.get()
                stream, req = self.streams[i], self.reqs[i]
                if tok is not None:
                    delta = stream.push(tok)
                    if stream.stopped:
                        req.cancelled = True  # the engine drops it at its next step
                    if delta:
                        yield i, delta, None
                    continue
                left -= 1
                tail = stream.finish()
                if tail:
                    yield i, tail, None
                reason = "stop" if stream.stopped or req.finish_reason == "eot" else "length"
                if req.finish_reason and req.finish_reason.startswith("error"):
                    reason = "error"
                yield i, "", reason
        finally:
            for r in self.reqs:
                if not r.done:
                    r.cancelled = True  # the client went away: free the slots
            self.engine.wakeup.set()


def _data(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _sse(run: _Run, completion: Completion, include_usage: bool):
    for i in range(completion.n):
        yield _data(completion.opening(i))
    async for i, delta, reason in run.events():
        yield _data(completion.add(i, delta, reason))
    if include_usage:
        completion.completion_tokens = run.completion_tokens
        yield _data(completion.usage_chunk())
    yield "data: [DONE]\n\n"


async def _hung_up(http: HttpRequest) -> None:
    """Returns when the client closes its connection (the body has been read already)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass


async def _whole(run: _Run, completion: Completion, http: HttpRequest) -> dict:
    """Collect the whole completion, or stop generating as soon as the client hangs up."""

    async def collect() -> None:
        async for i, delta, reason in run.events():
            completion.add(i, delta, reason)

    work = asyncio.ensure_future(collect())
    gone = asyncio.ensure_future(_hung_up(http))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, gone):
            task.cancel()  # cancelling ``work`` runs events()' clean-up: the sequences stop
        await asyncio.gather(work, gone, return_exceptions=True)
    if not work.done() or work.cancelled():
        raise ApiError(499, "the client closed the connection")
    work.result()
    if "error" in completion.reasons:
        failures = {r.finish_reason for r in run.reqs if r.finish_reason != "eot"}
        raise ApiError(500, f"generation failed ({', '.join(sorted(map(str, failures)))})")
    completion.completion_tokens = run.completion_tokens
    return completion.response()

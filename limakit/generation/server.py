"""An OpenAI-compatible server over the continuous-batching engine (FastAPI + uvicorn).

``POST /v1/chat/completions`` (plain or ``stream: true`` server-sent events), ``POST
/v1/completions`` (plain text in, no chat template; whole responses) and ``GET /v1/models``.
Concurrent requests share one engine running in a background thread, so they are batched together;
each choice is one engine sequence. Requests are validated by FastAPI against
:class:`~limakit.generation.api_models.ChatRequest` and ``CompletionRequest``; a field this server
does not honour is refused, never ignored. Every error has OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``: 400 for a bad request, 401 for a wrong key,
404 for an unknown model, 413 for a body over ``max_body_bytes``, 5xx (``server_error``) for a
fault of ours. Prompts are tokenised in a worker thread, so a huge one never stalls other clients.

Log-probabilities (chat ``logprobs``/``top_logprobs``, completions ``logprobs``/``echo``) are the
model's own distribution: the log-softmax of its raw logits, as OpenAI reports them, not the
distribution after repetition penalty, temperature and top-p that the token was sampled from.

Each request's queue time (from its arrival to its last sequence taking a batch slot) is in
``usage.queue_time_s``, in the ``x-queue-time`` header of whole responses, and in the line the
``limakit.serve`` logger writes for each request.

>>> app = create_app(model, tokenizer, model_name="lima")  # doctest: +SKIP
>>> uvicorn.run(app, port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
import time

from fastapi import Depends, FastAPI
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from limakit.core.asgi import BodyLimit
from limakit.generation.api_models import (
    ChatRequest,
    Completion,
    CompletionRequest,
    TextCompletion,
    error_body,
    logprob_entry,
)
from limakit.generation.batch import context_length
from limakit.generation.config import DecodeConfig
from limakit.generation.engine import Engine, Request, TokenLogprob
from limakit.generation.sampler import generator_for
from limakit.generation.streaming import TextStream, TokenPieces
from limakit.records.example import validate_messages

MAX_BODY_BYTES = 8 * 2**20  # far above any context's worth of text, far below a memory problem
log = logging.getLogger("limakit.serve")


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
    if first.get("type") == "string_unicode":  # pydantic's word for a key with a lone surrogate
        msg = "a field name contains a lone UTF-16 surrogate, which is not Unicode text"
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
    tokenizer=None,
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
    from limakit.models import LoadedModel

    config = config or DecodeConfig()
    # ``model``: a LoadedModel (``tokenizer`` None), or a loaded pair, used where it is. Wrapping
    # a pair adds the EOT token to the tokenizer here, once, if it lacks it: later renders (in
    # worker threads) then only read the tokenizer.
    loaded = model if isinstance(model, LoadedModel) else LoadedModel.of(model, tokenizer)
    model, tokenizer = loaded.pair
    engine = Engine(loaded, max_batch=max_batch, cuda_graphs=cuda_graphs)
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

    served = _Served(engine, tokenizer, model_name, config, limit)
    app.post("/v1/chat/completions")(served.chat)
    app.post("/v1/completions")(served.completions)
    return app


class _Served:
    """The two generation routes over one engine: what each request shares with the others."""

    def __init__(self, engine: Engine, tokenizer, model_name: str, config: DecodeConfig, limit):
        self.engine, self.tokenizer, self.model_name = engine, tokenizer, model_name
        self.config, self.limit = config, limit
        self.pieces = TokenPieces(tokenizer)
        self.prompt_text = _PromptEncoder(tokenizer)

    def check(self, body) -> None:
        """The model must be this one, and every field one the server honours."""
        if body.model != self.model_name:
            raise ApiError(
                404,
                f"the model {body.model!r} does not exist here (this server has "
                f"{self.model_name!r})",
                "model",
                "model_not_found",
            )
        found = body.refused()
        if found:
            raise ApiError(400, found[1], found[0], "unsupported_parameter")

    async def chat(self, body: ChatRequest, http: HttpRequest):
        arrived = time.monotonic()
        self.check(body)
        engine, tokenizer = self.engine, self.tokenizer
        prompt, decoding, max_tokens = await _admit(body, tokenizer, self.config, self.limit)
        top = (body.top_logprobs or 0) if body.logprobs else None
        run = _Run(engine, tokenizer, [prompt], body, decoding, max_tokens, arrived, logprobs=top)
        completion = Completion(
            "chatcmpl-" + secrets.token_hex(12),
            int(time.time()),
            self.model_name,
            n=body.n,
            prompt_tokens=len(prompt),
            logprobs=body.logprobs,
        )
        entries = _entries(self.pieces) if body.logprobs else None
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _sse(run, completion, usage, entries, http.url.path),
                media_type="text/event-stream",
            )
        return await _whole(run, completion, http, entries)

    def check_prompts(self, prompts: list[tuple[list[int], str]], max_tokens: int) -> None:
        for i, (ids, _) in enumerate(prompts):
            where = "prompt" if len(prompts) == 1 else f"prompt[{i}]"
            if not ids:
                raise ApiError(400, f"{where}: the prompt has no tokens", "prompt")
            bad = next((t for t in ids if t >= self.engine.vocab), None)
            if bad is not None:
                raise ApiError(
                    400,
                    f"{where}: token id {bad} is not in the vocabulary ({self.engine.vocab})",
                    "prompt",
                )
            if len(ids) + max_tokens > self.limit:
                too_long = len(ids) >= self.limit
                asks = "" if too_long else f" and max_tokens asks for {max_tokens}"
                raise ApiError(
                    400,
                    f"this model's maximum context length is {self.limit} tokens; {where} "
                    f"takes {len(ids)}{asks}",
                    "prompt" if too_long else "max_tokens",
                    "context_length_exceeded",
                )

    async def completions(self, body: CompletionRequest, http: HttpRequest):
        arrived = time.monotonic()
        self.check(body)
        engine, pieces = self.engine, self.pieces
        prompts = await asyncio.to_thread(self.prompt_text.encode_all, body.prompt)
        self.check_prompts(prompts, body.max_tokens)
        run = _Run(
            engine,
            self.tokenizer,
            [ids for ids, _ in prompts],
            body,
            _decoding(self.config, body),
            body.max_tokens,
            arrived,
            logprobs=body.logprobs,
            prompt_logprobs=body.logprobs if body.echo else None,
        )
        result = TextCompletion(
            "cmpl-" + secrets.token_hex(12),
            int(time.time()),
            self.model_name,
            choices=len(run.reqs),
            prompt_tokens=sum(len(ids) for ids, _ in prompts),
        )

        def add(i: int, delta: str, reason: str | None, _scores) -> None:
            result.texts[i] += delta
            result.reasons[i] = reason or result.reasons[i]

        await _collect(run, http, add, result.id)
        for i, req in enumerate(run.reqs):
            text = prompts[i // body.n][1]
            if body.logprobs is not None:
                result.logprobs[i] = _legacy_logprobs(
                    req, run.kept[i], pieces, engine.eot_id, text if body.echo else "",
                    result.texts[i],
                )  # fmt: skip
            if body.echo:
                result.texts[i] = text + result.texts[i]
        result.completion_tokens = run.completion_tokens
        result.queue_time = run.queue_time
        _log_request(http.url.path, result.id, 200, run)
        return _json(result.response(), run.queue_time)


class _PromptEncoder:
    """Plain-text prompts to ids, as the model saw text in pretraining: no chat template, the
    tokenizer's BOS first if it normally prepends one, and special-token text read as text (a
    prompt can never contain a control token)."""

    def __init__(self, tokenizer):
        from limakit.records.template import bos_text

        self.tokenizer = tokenizer
        self.bos = [tokenizer.bos_token_id] if bos_text(tokenizer) else []

    def encode(self, text: str) -> list[int]:
        enc = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)
        return self.bos + list(enc["input_ids"])

    def encode_all(self, prompts: list) -> list[tuple[list[int], str]]:
        """(ids, text) per prompt; token-id prompts are used as they are (and decoded)."""
        out = []
        for p in prompts:
            if isinstance(p, str):
                out.append((self.encode(p), p))
            else:
                out.append((list(p), self.tokenizer.decode(p, skip_special_tokens=True)))
        return out


async def _admit(
    body: ChatRequest, tokenizer, defaults: DecodeConfig, limit: int
) -> tuple[list[int], DecodeConfig, int]:
    """A request's prompt ids, decoding and token budget; a 400 when it cannot be answered."""
    from limakit.records.template import render_prompt

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


def _decoding(defaults: DecodeConfig, body) -> DecodeConfig:
    """The server's decoding with the request's own fields on top (validated like any config)."""
    fields = ("temperature", "top_p", "repetition_penalty")
    given = {k: getattr(body, k) for k in fields if getattr(body, k) is not None}
    return DecodeConfig(**{**defaults.model_dump(), **given})


class _Run:
    """The engine sequences of one request (``n`` per prompt, numbered prompt by prompt) and
    their text, as events."""

    def __init__(
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
                on_token=self._put_token,
                on_finish=self._put_end,
                logprobs=logprobs,
                prompt_logprobs=prompt_logprobs,
            )
            for i, prompt in enumerate(prompts)
            for j in range(body.n)
        ]
        self.streams = [TextStream(tokenizer, body.stops) for _ in self.reqs]
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
                reason = "stop" if stream.stopped or req.finish_reason == "eot" else "length"
                if req.finish_reason and req.finish_reason.startswith("error"):
                    reason = "error"
                yield i, "", reason, []
        finally:
            for r in self.reqs:
                if not r.done:
                    r.cancelled = True  # the client went away: free the slots
            self.engine.wakeup.set()


def _entries(pieces: TokenPieces):
    """Turns scored tokens into chat ``logprobs.content`` entries."""

    def make(scored: list[tuple[int, TokenLogprob]]) -> list[dict]:
        out = []
        for token, score in scored:
            text, raw = pieces(token)
            top = [(*pieces(t), v) for t, v in score.top]
            out.append(logprob_entry(text, raw, score.logprob, top))
        return out

    return make


def _legacy_logprobs(
    req: Request, kept, pieces: TokenPieces, eot_id: int, echoed: str, answer: str
) -> dict:
    """The legacy completions ``logprobs``: ``tokens``, ``token_logprobs``, ``top_logprobs`` (a
    dict per token: the most likely tokens and the token itself) and ``text_offset`` (where each
    token starts in the choice's text) over the echoed prompt, if any, then the answer's tokens
    (and the EOT when the answer ended at it)."""
    scored: list[tuple[int, TokenLogprob | None]] = []
    if req.prompt_logprobs is not None:
        ids = req.prompt_ids
        scored += [(ids[0], None), *zip(ids[1:], req.prompt_token_logprobs)]
    scored += kept
    if req.finish_reason == "eot" and len(req.token_logprobs) > len(req.output_ids):
        scored.append((eot_id, req.token_logprobs[-1]))
    tokens, logprobs, tops, sizes = [], [], [], []
    for token, score in scored:
        text, raw = pieces(token)
        tokens.append(text)
        special = token in pieces.special
        sizes.append(0 if special else len(raw))
        if score is None:
            logprobs.append(None)
            tops.append(None)
            continue
        logprobs.append(score.logprob)
        top = {pieces.text(t): v for t, v in reversed(score.top)}  # the best wins a clash
        top.setdefault(text, score.logprob)
        tops.append(top)
    return {
        "tokens": tokens,
        "token_logprobs": logprobs,
        "top_logprobs": tops,
        "text_offset": _char_offsets(echoed + answer, sizes),
    }


def _char_offsets(text: str, sizes: list[int]) -> list[int]:
    """Where each token starts in ``text``, from the UTF-8 sizes of the tokens before it."""
    index = [i for i, ch in enumerate(text) for _ in range(len(ch.encode("utf-8", "replace")))]
    index.append(len(text))
    out, at = [], 0
    for size in sizes:
        out.append(index[min(at, len(index) - 1)])
        at += size
    return out


def _data(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _log_request(path: str, rid: str, status: int, run: _Run) -> None:
    queue = run.queue_time
    log.info(
        "%s %s %d prompt_tokens=%d completion_tokens=%d queue_time=%s total_time=%.3fs",
        path,
        rid,
        status,
        sum(len(r.prompt_ids) for r in run.reqs),
        run.completion_tokens,
        "-" if queue is None else f"{queue:.3f}s",
        time.monotonic() - run.arrived,
    )


def _json(body: dict, queue_time: float | None) -> JSONResponse:
    headers = {} if queue_time is None else {"x-queue-time": f"{queue_time:.4f}"}
    return JSONResponse(body, headers=headers)


async def _sse(run: _Run, completion: Completion, include_usage: bool, entries, path: str):
    status = 499  # unless the stream ends normally
    try:
        for i in range(completion.n):
            yield _data(completion.opening(i))
        async for i, delta, reason, scored in run.events():
            yield _data(completion.add(i, delta, reason, entries(scored) if entries else None))
        status = 500 if "error" in completion.reasons else 200
        if include_usage:
            completion.completion_tokens = run.completion_tokens
            completion.queue_time = run.queue_time
            yield _data(completion.usage_chunk())
        yield "data: [DONE]\n\n"
    finally:
        _log_request(path, completion.id, status, run)


async def _hung_up(http: HttpRequest) -> None:
    """Returns when the client closes its connection (the body has been read already)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass


async def _collect(run: _Run, http: HttpRequest, add, rid: str) -> None:
    """Feed every event to ``add``, or stop generating as soon as the client hangs up; a
    failed generation is a 500."""

    async def collect() -> None:
        async for event in run.events():
            add(*event)

    work = asyncio.ensure_future(collect())
    gone = asyncio.ensure_future(_hung_up(http))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, gone):
            task.cancel()  # cancelling ``work`` runs events()' clean-up: the sequences stop
        await asyncio.gather(work, gone, return_exceptions=True)
    if not work.done() or work.cancelled():
        _log_request(http.url.path, rid, 499, run)
        raise ApiError(499, "the client closed the connection")
    work.result()
    failures = {r.finish_reason for r in run.reqs if (r.finish_reason or "").startswith("error")}
    if failures:
        _log_request(http.url.path, rid, 500, run)
        raise ApiError(500, f"generation failed ({', '.join(sorted(map(str, failures)))})")


async def _whole(run: _Run, completion: Completion, http: HttpRequest, entries) -> JSONResponse:
    """Collect the whole chat completion."""

    def add(i, delta, reason, scored) -> None:
        completion.add(i, delta, reason, entries(scored) if entries else None)

    await _collect(run, http, add, completion.id)
    completion.completion_tokens = run.completion_tokens
    completion.queue_time = run.queue_time
    _log_request(http.url.path, completion.id, 200, run)
    return _json(completion.response(), run.queue_time)

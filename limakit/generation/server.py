"""An OpenAI-compatible server over the continuous-batching engine (FastAPI + uvicorn).

``POST /v1/chat/completions`` (plain or ``stream: true`` server-sent events), ``POST
/v1/completions`` (plain text in, no chat template; whole responses) and ``GET /v1/models``.
Concurrent requests share one engine running in a background thread, so they are batched together;
each choice is one engine sequence. A request may ask for at most ``max_sequences`` sequences
(prompts times ``n``), and waiting requests take turns for free batch slots, so a small request
behind a large one starts within a few decode steps. Chat prompts are rendered in the chat format
the model was loaded for (``lima serve --template``, as ``lima generate``). Requests are validated
by FastAPI against :class:`~limakit.generation.api_schemas.ChatRequest` and ``CompletionRequest``; a
field this server does not honour is refused, never ignored. Every error has OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``: 400 for a bad request, 401 for a wrong key,
404 for an unknown model, 413 for a body over ``max_body_bytes``, 5xx (``server_error``) for a
fault of ours. Prompts are tokenised in a worker thread, so a huge one never stalls other clients.

Log-probabilities (chat ``logprobs``/``top_logprobs``, completions ``logprobs``/``echo``) are the
model's own distribution: the log-softmax of its raw logits, as OpenAI reports them, not the
distribution after repetition penalty, temperature and top-p that the token was sampled from.

Each request's queue time (from its arrival to its last sequence taking a batch slot) is in
``usage.queue_time_s``, in the ``x-queue-time`` header of whole responses, and in the line the
``limakit.serve`` logger writes for each request.

>>> app = create_app(load_model_for("smollm2-135m"), model_name="lima")  # doctest: +SKIP
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
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI
from fastapi import Request as HttpRequest
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, StreamingResponse

from limakit.core.asgi import BodyLimit
from limakit.core.errors import LimaError
from limakit.generation.api_errors import ApiError, install_errors, too_large
from limakit.generation.api_schemas import (
    ChatRequest,
    Completion,
    CompletionRequest,
    TextCompletion,
)
from limakit.generation.batch import context_length
from limakit.generation.chat_format import ChatFormat
from limakit.generation.config import DecodeConfig
from limakit.generation.engine import Engine
from limakit.generation.logprobs import chat_entries, legacy_logprobs
from limakit.generation.server_run import ServerRun
from limakit.generation.streaming import TokenPieces
from limakit.records.example import validate_messages

if TYPE_CHECKING:
    from limakit.models import LoadedModel
MAX_BODY_BYTES = 8 * 2**20  # far above any context's worth of text, far below a memory problem
# Sequences (prompts x n) one request may ask for: a batch of prompts as evaluation harnesses send
# them fits, while one request can no longer hold a small machine for half an hour.
MAX_SEQUENCES = 64
log = logging.getLogger("limakit.serve")


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


def create_app(
    loaded: LoadedModel,
    *,
    model_name: str = "lima",
    api_key: str | None = None,
    config: DecodeConfig | None = None,
    max_batch: int = 16,
    max_body_bytes: int = MAX_BODY_BYTES,
    cuda_graphs: bool | None = None,
    max_sequences: int = MAX_SEQUENCES,
):
    """The FastAPI app; the engine thread starts now and stops with the app's shutdown.

    With ``api_key`` every route (the API docs too) needs ``Authorization: Bearer KEY``. A request
    asking for more than ``max_sequences`` sequences (prompts times ``n``) is refused. Chat
    prompts are rendered in the format ``loaded`` was loaded for (its template, or its own chat
    template without one); its loader added the EOT to the tokenizer, so renders (in worker
    threads) only read the tokenizer.
    """
    if max_sequences < 1:
        raise ValueError(f"max_sequences must be at least 1 (got {max_sequences})")
    config = config or DecodeConfig()
    fmt = ChatFormat.for_loaded(loaded)
    engine = Engine(
        loaded,
        max_batch=max_batch,
        cuda_graphs=cuda_graphs,
        eot_id=fmt.eot_id,
        stop_ids=fmt.stop_ids,
        marker_ids=fmt.marker_ids,
    )
    worker = EngineWorker(engine)
    limit = context_length(loaded.model)

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
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, too_large=too_large().response())
    install_errors(app)

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

    served = _Served(engine, fmt, model_name, config, limit, max_sequences)
    app.post("/v1/chat/completions")(served.chat)
    app.post("/v1/completions")(served.completions)
    return app


class _Served:
    """The two generation routes over one engine: what each request shares with the others."""

    def __init__(self, engine: Engine, fmt: ChatFormat, model_name, config, limit, max_sequences):
        self.engine, self.tokenizer, self.model_name = engine, fmt.tokenizer, model_name
        self.fmt, self.config, self.limit, self.max_sequences = fmt, config, limit, max_sequences
        self.pieces = TokenPieces(fmt.tokenizer)
        self.prompt_text = _PromptEncoder(fmt.tokenizer)

    def check(self, body, prompts: int = 1) -> None:
        """The model must be this one, every field one the server honours, and the sequences
        asked for (``prompts`` x ``n``) within the server's limit."""
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
        if prompts * body.n > self.max_sequences:
            asked = f"{prompts} prompts x n {body.n}" if prompts > 1 else f"n {body.n}"
            raise ApiError(
                400,
                f"this request asks for {prompts * body.n} sequences ({asked}); this server "
                f"generates at most {self.max_sequences} per request: send fewer prompts at a "
                "time",
                "prompt" if prompts > 1 else "n",
                "too_many_sequences",
            )

    async def chat(self, body: ChatRequest, http: HttpRequest):
        arrived = time.monotonic()
        self.check(body)
        engine, tokenizer = self.engine, self.tokenizer
        prompt, decoding, max_tokens = await _admit(body, self.fmt, self.config, self.limit)
        top = (body.top_logprobs or 0) if body.logprobs else None
        run = ServerRun(
            engine, tokenizer, [prompt], body, decoding, max_tokens, arrived,
            logprobs=top, markers=self.fmt.markers,
        )  # fmt: skip
        completion = Completion(
            "chatcmpl-" + secrets.token_hex(12),
            int(time.time()),
            self.model_name,
            n=body.n,
            prompt_tokens=len(prompt),
            logprobs=body.logprobs,
        )
        entries = chat_entries(self.pieces) if body.logprobs else None
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _sse(run, completion, usage, entries, http.url.path),
                media_type="text/event-stream",
            )
        return await _whole(run, completion, http, entries)

    def check_ids(self, prompts: list) -> None:
        """Every token id of a token-id prompt is in the vocabulary: checked before anything
        decodes them (a tokenizer cannot decode an id like 2**63)."""
        vocab = self.engine.vocab
        for i, p in enumerate(prompts):
            bad = None if isinstance(p, str) else next((t for t in p if t >= vocab), None)
            if bad is not None:
                where = "prompt" if len(prompts) == 1 else f"prompt[{i}]"
                raise ApiError(
                    400,
                    f"{where}: token id {bad} is not in the vocabulary ({vocab})",
                    "prompt",
                )

    def check_prompts(self, prompts: list[tuple[list[int], str]], max_tokens: int) -> None:
        for i, (ids, _) in enumerate(prompts):
            where = "prompt" if len(prompts) == 1 else f"prompt[{i}]"
            if not ids:
                raise ApiError(400, f"{where}: the prompt has no tokens", "prompt")
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
        self.check(body, len(body.prompt))
        self.check_ids(body.prompt)
        engine, pieces = self.engine, self.pieces
        prompts = await asyncio.to_thread(self.prompt_text.encode_all, body.prompt)
        self.check_prompts(prompts, body.max_tokens)
        run = ServerRun(
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
                echoed = text if body.echo else ""
                result.logprobs[i] = legacy_logprobs(
                    req, run.kept[i], pieces, echoed, result.texts[i]
                )
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
    body: ChatRequest, fmt: ChatFormat, defaults: DecodeConfig, limit: int
) -> tuple[list[int], DecodeConfig, int]:
    """A request's prompt ids, decoding and token budget; a 400 when it cannot be answered."""
    messages = [m.to_message() for m in body.messages]
    try:
        validate_messages(messages, require_answer=False)
    except ValueError as e:
        raise ApiError(400, str(e), "messages") from None
    # Tokenising a long prompt takes a while: never on the event loop.
    try:
        prompt = await asyncio.to_thread(fmt.prompt_ids, messages)
    except LimaError as e:  # a model's own template that cannot render these contents safely
        raise ApiError(400, str(e), "messages") from None
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


def _data(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _log_request(path: str, rid: str, status: int, run: ServerRun) -> None:
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


async def _sse(run: ServerRun, completion: Completion, include_usage: bool, entries, path: str):
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


async def _collect(run: ServerRun, http: HttpRequest, add, rid: str) -> None:
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


async def _whole(
    run: ServerRun, completion: Completion, http: HttpRequest, entries
) -> JSONResponse:
    """Collect the whole chat completion."""

    def add(i, delta, reason, scored) -> None:
        completion.add(i, delta, reason, entries(scored) if entries else None)

    await _collect(run, http, add, completion.id)
    completion.completion_tokens = run.completion_tokens
    completion.queue_time = run.queue_time
    _log_request(http.url.path, completion.id, 200, run)
    return _json(completion.response(), run.queue_time)

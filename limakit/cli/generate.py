"""``lima generate``, ``lima chat`` and ``lima serve``: parse flags, call limakit.generation."""

from __future__ import annotations

import argparse

from limakit.cli import add_overrides


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1, refused at parsing (before any loading)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _port(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535 (got {value})")
    return value


def _template_flag(p: argparse.ArgumentParser, what: str) -> None:
    """The one ``--template`` flag of ``generate`` and ``serve``, resolved by the same loader."""
    p.add_argument(
        "--template",
        choices=["auto", "own", "limakit"],
        default=None,
        help="chat format: limakit's (limakit checkpoints, base models without a chat template), "
        "the model's own chat template, stopping at its own end-of-turn tokens (own: an instruct "
        "baseline), or auto (default: limakit's for a limakit checkpoint or a model without a "
        f"template, the model's own otherwise); {what}",
    )


def _decoding_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding (defaults: the LIMA paper's)")
    g.add_argument("--temperature", type=float, default=None, help="default 0.7; 0 = greedy")
    g.add_argument("--top-p", type=float, default=None, help="nucleus mass, default 0.9")
    g.add_argument(
        "--repetition-penalty",
        type=float,
        default=None,
        help="on previously generated tokens, default 1.2 (1 = off)",
    )
    g.add_argument("--max-new-tokens", type=int, default=None, help="default 2048")
    g.add_argument("--config", default=None, help="YAML file with decoding fields")
    add_overrides(g, "a decoding field", "top_p=0.95")
    p.add_argument(
        "--device",
        default="auto",
        help="where the model runs: auto (default: cuda when available, else cpu), cpu, cuda, "
        "cuda:N; a device this machine lacks is an error",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        help="weights dtype: auto (default: bfloat16 where bf16 matmuls are fast, else "
        "float32), bfloat16 or float32",
    )
    p.add_argument(
        "--no-cuda-graphs",
        dest="cuda_graphs",
        action="store_false",
        default=None,
        help="decode eagerly; by default on CUDA each decode step shape is captured once as a "
        "CUDA graph and replayed (fewer kernel launches)",
    )


def _config(args):
    from limakit.core.config import load_config
    from limakit.generation.config import DecodeConfig

    overrides = list(args.overrides)
    for flag, key in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("repetition_penalty", "repetition_penalty"),
        ("max_new_tokens", "max_new_tokens"),
        ("template", "template"),
    ]:
        value = getattr(args, flag, None)  # --template is on generate and serve only
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(DecodeConfig, args.config, overrides)


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="sample answers to a prompt file (LIMA decoding, resumable)",
        description="Sample K answers per prompt with LIMA decoding (top_p 0.9, temperature 0.7, "
        "repetition penalty 1.2 on generated tokens, stop at EOT). Each output line is an Example "
        "with the answer appended; meta holds sample, model, stop, new_tokens, decoding and "
        "template. A prompt whose user messages follow one another (or a FastChat question with "
        "several turns) is answered turn by turn, each answer fed back before the next turn; "
        "meta.turns then lists every generated answer. A rerun skips (id, sample) pairs already "
        "in --out.",
    )
    p.add_argument("--model", required=True, help="checkpoint folder, alias or hub id")
    p.add_argument(
        "--prompts",
        required=True,
        help="Example JSONL, each ending with a user message (user messages in a row are turns "
        "to answer in order), FastChat questions (question_id, category, turns), or a file "
        "shipped in limakit: packaged:safety/prompts.jsonl, packaged:demo/dev_prompts.jsonl",
    )
    p.add_argument("--out", required=True, help="answers JSONL (appended to and resumed)")
    p.add_argument("--samples", type=int, default=1, help="answers per prompt (default 1)")
    p.add_argument("--seed", type=int, default=0, help="same seed -> same answers")
    p.add_argument(
        "--batch-size", type=_at_least_one, default=16, help="sequences decoded together"
    )
    p.add_argument("--model-name", default=None, help="name recorded in meta.model")
    p.add_argument(
        "--force",
        action="store_true",
        help="resume into --out even when its answers were made with another model name, seed, "
        "decoding or dtype (each line keeps its own settings in meta.decoding)",
    )
    p.add_argument(
        "--backend",
        choices=["hf", "vllm"],
        default="hf",
        help="hf: built-in continuous batching (CPU/GPU); vllm: needs vLLM installed (GPU)",
    )
    _template_flag(p, "recorded in meta.template")
    _decoding_flags(p)
    p.set_defaults(func=run_generate)

    c = sub.add_parser("chat", help="chat with a model in the terminal (/reset, /exit)")
    c.add_argument("--model", required=True)
    c.add_argument("--system", default=None, help="an optional system message")
    c.add_argument("--seed", type=int, default=0)
    _decoding_flags(c)
    c.set_defaults(func=run_chat)

    s = sub.add_parser(
        "serve",
        help="OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions)",
        description="Serve a model over OpenAI's API: POST /v1/chat/completions (in the chat "
        "format --template picks, as generate; streaming too), POST /v1/completions (plain text "
        "or token ids, no chat template; whole responses only) and GET /v1/models.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--model", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_port, default=8000, help="1 to 65535 (default 8000)")
    s.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    s.add_argument("--model-name", default=None, help="the id /v1/models reports")
    s.add_argument(
        "--batch-size",
        type=_at_least_one,
        default=16,
        help="batch slots: sequences decoded together (default 16). A request waits in a queue "
        "until a slot is free, and a slot is held until its answer ends, so with every slot "
        "busy with long answers a short request waits for one of them to finish. More slots: "
        "more tokens per second in all and shorter waits, but each step is slower (every "
        "stream gets its tokens more slowly) and the KV cache needs more memory. Each "
        "request's wait is reported (usage.queue_time_s, the x-queue-time header, the log "
        "line). Waiting requests take turns for free slots, one sequence each, so a small "
        "request behind a large one starts within a few decode steps",
    )
    s.add_argument(
        "--max-sequences-per-request",
        type=_at_least_one,
        default=None,
        help="the most sequences (prompts x n) one request may ask for (default "
        "64); a larger request gets a 400 naming the limit",
    )
    _template_flag(s, "chat requests are rendered in it (/v1/completions never is)")
    s.add_argument(
        "--max-body-mb",
        type=float,
        default=8.0,
        help="larger request bodies get 413 before they are read (default 8 MiB)",
    )
    s.add_argument(
        "--backend",
        choices=["hf", "vllm"],
        default="hf",
        help="hf: the built-in engine (CPU/GPU); vllm: vLLM's OpenAI server with LIMA decoding "
        "as its default (vLLM installed, GPUs)",
    )
    _decoding_flags(s)
    s.set_defaults(func=run_serve)


SERVE_EPILOG = """\
request fields:
  honoured (chat)         model, messages (role, content: text or text parts), max_tokens,
                          max_completion_tokens, temperature, top_p, repetition_penalty, n,
                          seed, stop, stream, stream_options.include_usage, logprobs,
                          top_logprobs (0-20)
  honoured (completions)  model, prompt (a string, strings, token ids or lists of them),
                          max_tokens (default 16; 0 with echo scores the prompt), temperature,
                          top_p, repetition_penalty, n, seed, stop, logprobs (0-20), echo
  accepted at a value     user, metadata, service_tier, parallel_tool_calls: any value;
  that changes nothing    presence_penalty, frequency_penalty, min_p, min_tokens: 0;
                          top_k: -1 or 0; logit_bias: {}; tools, functions: [];
                          tool_choice, function_call: "none" or "auto";
                          response_format: {"type": "text"}; modalities: ["text"];
                          store, ignore_eos: false; best_of: 1; suffix: ""; any field: null;
                          in a message: refusal: null, tool_calls: []
  refused (400 naming it) any other value of those, and every other field (for example
                          tools, tool_choice "required", response_format json, logit_bias,
                          non-zero penalties, top_k, a message's name; stream on
                          /v1/completions)

a request asks for at most --max-sequences-per-request sequences (prompts x n) and waiting
requests take turns for free batch slots, one sequence each; a marker of the chat format the
model writes (limakit's next role header, a template's own control tokens) ends the answer like
the end of turn (finish_reason "stop"; the marker is not in the text).

log-probabilities are the model's own: the log-softmax of its raw logits, as OpenAI reports
them, not the distribution after repetition penalty, temperature and top-p that a token was
sampled from. Each request's queue time (arrival to a batch slot) is in usage.queue_time_s,
the x-queue-time header (whole responses) and the per-request log line.
"""


def run_generate(args) -> int:
    from limakit.core.console import note
    from limakit.generation import generate_answers
    from limakit.generation.batch import model_for_answers
    from limakit.generation.turns import read_prompts
    from limakit.run.config import resolve_ref

    config = _config(args)
    prompts = list(read_prompts(resolve_ref(args.prompts)))
    load = model_for_answers(args.model, device=args.device, dtype=args.dtype,
                             template=config.template, backend=args.backend)  # fmt: skip
    answers = generate_answers(
        load,
        prompts,
        samples=args.samples,
        seed=args.seed,
        config=config,
        out=args.out,
        batch_size=args.batch_size,
        model_name=args.model_name or args.model,
        backend=args.backend,
        force=args.force,
        cuda_graphs=args.cuda_graphs,
    )
    stops = {}
    for a in answers:
        stops[a.meta.get("stop")] = stops.get(a.meta.get("stop"), 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(stops.items(), key=lambda kv: str(kv[0])))
    note(
        f"{len(answers)} answers ({len(prompts)} prompts x {args.samples}) in {args.out}: "
        f"stopped by {summary}"
    )
    return 0


def run_chat(args) -> int:
    from limakit.generation.chat import chat_loop
    from limakit.models import load_model_for

    loaded = load_model_for(args.model, args.device, args.dtype)
    chat_loop(
        loaded,
        config=_config(args),
        system=args.system,
        seed=args.seed,
        cuda_graphs=args.cuda_graphs,
    )
    return 0


def run_serve(args) -> int:
    if args.backend == "vllm":
        return _serve_vllm(args)
    import uvicorn

    from limakit.core.errors import LimaError
    from limakit.generation.server import MAX_SEQUENCES, create_app
    from limakit.models import load_model_for

    if args.max_body_mb <= 0:
        raise LimaError(f"--max-body-mb must be positive (got {args.max_body_mb})")
    config = _config(args)
    # The chat format is resolved as generate resolves it: the same loader, the same default.
    loaded = load_model_for(args.model, args.device, args.dtype, config.template)
    app = create_app(
        loaded,
        model_name=args.model_name or args.model,
        api_key=args.api_key,
        config=config,
        max_batch=args.batch_size,
        max_body_bytes=int(args.max_body_mb * 2**20),
        cuda_graphs=args.cuda_graphs,
        max_sequences=args.max_sequences_per_request or MAX_SEQUENCES,
    )
    import logging

    from limakit.core.console import note

    request_log = logging.getLogger("limakit.serve")
    if not request_log.handlers:  # one line per request, with its queue time
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        request_log.addHandler(handler)
        request_log.setLevel(logging.INFO)
    key = " (API key required)" if args.api_key else ""
    note(f"serving {args.model} on http://{args.host}:{args.port}/v1{key} - Ctrl-C stops")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _serve_vllm(args) -> int:
    import importlib.util
    import os

    from limakit.core.errors import LimaError
    from limakit.generation.vllm_backend import serve_command

    if importlib.util.find_spec("vllm") is None:
        raise LimaError("serve --backend vllm needs vLLM installed (pip install vllm; GPUs)")
    if args.device not in ("auto", "cuda"):
        raise LimaError(f"serve --backend vllm runs on the GPUs vLLM finds, not {args.device!r}")
    cmd = serve_command(
        args.model,
        host=args.host,
        port=args.port,
        config=_config(args),
        model_name=args.model_name,
        api_key=args.api_key,
    )
    os.execv(cmd[0], cmd)  # vLLM's server takes over this process
    return 0

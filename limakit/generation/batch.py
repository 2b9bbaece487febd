"""Answer a prompt file: K samples per prompt, streamed to a resumable JSONL of Examples.

Each output line is an :class:`~limakit.records.example.Example`: the prompt's id, source and messages with
the answer appended as the last assistant message, and in ``meta`` the prompt's own meta plus
``sample``, ``model``, ``stop``, ``new_tokens``, ``decoding`` and ``template`` (the chat format
sampled in: "limakit" or "own", see :mod:`limakit.generation.chat_format`). ``stop`` is "eot" (the
end of turn), "marker" (the model wrote one of its format's markers, such as the next role header
``<|user|>``: the answer ends before it) or "length".

A prompt with several user turns awaiting answers is answered turn by turn
(:mod:`limakit.generation.turns`): every answer is in ``messages``, ``stop`` and ``new_tokens`` are
the final answer's, and ``meta.turns`` lists each generated answer.

>>> load = model_for_answers("smollm2-135m", template="limakit")  # doctest: +SKIP
>>> answers = generate_answers(load, prompts, samples=5, out="answers.jsonl")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from limakit.core import console
from limakit.core.errors import LimaError
from limakit.core.faults import crash_point
from limakit.core.files import append_jsonl, drop_cut_line, read_jsonl_records
from limakit.generation.config import DecodeConfig
from limakit.records.example import Example

if TYPE_CHECKING:
    from limakit.models import LoadedModel


def model_for_answers(
    name: str | os.PathLike,
    *,
    device: str | None = "auto",
    dtype: str = "auto",
    template: str = "limakit",
    backend: str = "hf",
) -> Callable[[], LoadedModel]:
    """How :func:`generate_answers` gets the model ``name`` (an alias or a folder), decided where a
    command or stage starts: the device and dtype are resolved now (one this machine lacks fails
    here, before any reading), the model is loaded by the first call only, and kept (a rerun
    that finds every answer written loads nothing; the files one stage answers share one load).
    ``template`` (auto, own, limakit, or a plain-text layout) is the chat format asked for; for
    the vLLM ``backend``, which reads the weights itself, only the tokenizer and template are.
    """
    from limakit.models import load_model_for, resolve_runtime

    if backend == "vllm":
        return functools.cache(lambda: load_model_for(str(name), template=template, weights=False))
    runtime = resolve_runtime(device, dtype)
    return functools.cache(
        lambda: load_model_for(str(name), runtime.device, runtime.dtype_name, template)
    )


def context_length(model) -> int:
    """The longest prompt + answer the model's position embeddings allow."""
    cfg = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    return int(getattr(cfg, "max_position_embeddings", 0) or 2048)


def read_done(out: Path) -> dict[tuple[str, int], Example]:
    """Answers already in ``out``, keyed by (id, sample). A last line a killed run cut short is
    taken off the file (it is generated again); a bad line elsewhere is an error naming the line."""
    if not out.exists():
        return {}
    from limakit.generation.turns import answered_from_dict

    drop_cut_line(out)
    done: dict[tuple[str, int], Example] = {}
    for lineno, row in read_jsonl_records(out):
        try:
            ex = answered_from_dict(row)
        except ValueError as e:
            raise LimaError(f"{out}:{lineno}: not a generated answer ({e})") from None
        done[(ex.id, int(ex.meta.get("sample", 0)))] = ex
    return done


def generate_answers(  # noqa: PLR0913 - keyword-only, one per option of `lima generate`
    model: LoadedModel | Callable[[], LoadedModel],
    prompts: list[Example],
    *,
    samples: int = 1,
    seed: int = 0,
    config: DecodeConfig | None = None,
    out: str | Path | None = None,
    batch_size: int = 16,
    model_name: str | None = None,
    progress: bool = True,
    backend: str = "hf",
    force: bool = False,
    cuda_graphs: bool | None = None,
) -> list[Example]:
    """Sample ``samples`` answers per prompt with LIMA decoding; write/resume ``out`` if given.

    Resuming into an ``out`` whose answers were made with another model name, seed, decoding,
    backend or dtype is an error naming the difference (``force=True`` mixes them anyway; each
    line keeps its own settings in ``meta.decoding``).

    ``model`` is a :class:`~limakit.models.LoadedModel`, sampled where it is and in the format
    it was loaded for, or a function returning one (:func:`model_for_answers`), called only when
    some answer is still to be made. Returns the answers in prompt order then sample order
    (those found in ``out`` included); ``model_name`` (default: the model's) is recorded with
    each. The same ``seed`` gives the same answers: each (prompt id, sample) has its own random
    stream. ``cuda_graphs`` (default: on for CUDA) replays decode steps as CUDA graphs.

    >>> ans = generate_answers(loaded, [Example([Message("user", "Hi")])])  # doctest: +SKIP
    >>> ans[0].messages[-1].role, ans[0].meta["stop"]  # doctest: +SKIP
    ('assistant', 'eot')
    """
    from limakit.models import LoadedModel

    config = config or DecodeConfig()
    if samples < 1:
        raise LimaError(f"samples must be at least 1 (got {samples})")
    _check_prompts(prompts)
    if backend not in ("hf", "vllm"):
        raise LimaError(f"unknown backend {backend!r} (choose hf or vllm)")
    out_path = Path(out) if out is not None else None
    if out_path and not out_path.parent.is_dir():
        raise LimaError(f"{out_path}: the folder {out_path.parent} does not exist; create it first")
    done = read_done(out_path) if out_path else {}
    todo = [(p, k) for p in prompts for k in range(samples) if (p.id, k) not in done]
    wanted = {"model": model_name or (model.name if isinstance(model, LoadedModel) else None)}
    wanted |= {**decoding_of(config), "seed": seed, "backend": backend}
    if not force:  # even with nothing left to do: those answers are not what was asked for
        check_resume(out_path, done.values(), wanted)
    if backend == "vllm":
        if todo:
            _run_vllm(model, todo, seed, config, model_name, out_path, done, wanted, force)
        return [done[(p.id, k)] for p in prompts for k in range(samples)]
    if todo:
        loaded = model if isinstance(model, LoadedModel) else model()
        fmt = _format(loaded, config)
        name = model_name or loaded.name
        if not force:  # the dtype and format are known now, before anything is generated
            known = {"model": name, "dtype": _dtype(loaded), "template": fmt.name}
            check_resume(out_path, done.values(), {**wanted, **known})
        from limakit.generation.engine import Engine

        engine = Engine(
            loaded,
            max_batch=batch_size,
            cuda_graphs=cuda_graphs,
            eot_id=fmt.eot_id,
            stop_ids=fmt.stop_ids,
            marker_ids=fmt.marker_ids,
        )
        done.update(_run(engine, fmt, name, todo, seed, config, out_path, progress))
    return [done[(p.id, k)] for p in prompts for k in range(samples)]


def _format(loaded: LoadedModel, config: DecodeConfig):
    """The chat format answers are sampled in: the loaded model's, or a plain-text layout."""
    from limakit.generation.chat_format import ChatFormat
    from limakit.generation.layouts import LAYOUTS

    if config.template not in LAYOUTS:
        return ChatFormat.for_loaded(loaded)
    shots = []
    if config.template == "in-context":
        from limakit.records.example import read_examples

        if not config.shots:
            raise LimaError("template in-context needs `shots`: a file of example exchanges")
        shots = list(read_examples(config.shots, require_answer=True))
    return ChatFormat.plain(loaded, LAYOUTS[config.template], shots)


def decoding_of(config: DecodeConfig) -> dict:
    """The decoding settings an answer records (the chat format is recorded apart, resolved)."""
    return config.model_dump(exclude={"template"})


def _run_vllm(model, todo, seed, config, model_name, out_path, done, wanted, force) -> None:  # noqa: PLR0913 - generate_answers' state, handed on whole
    from limakit.generation.layouts import LAYOUTS
    from limakit.generation.vllm_backend import generate_vllm
    from limakit.models import LoadedModel

    if config.template in LAYOUTS:
        raise LimaError(f"template {config.template}: sample with the hf backend")
    # vLLM loads the weights; the tokenizer, template and EOT come from limakit's loader.
    loaded = model if isinstance(model, LoadedModel) else model()
    if not force:
        template = "own" if loaded.template is None else "limakit"
        check_resume(out_path, done.values(), {**wanted, "template": template})
    new = generate_vllm(loaded, todo, seed=seed, config=config, model_name=model_name)
    if out_path:
        with open(out_path, "a", encoding="utf-8") as f:
            for ex in new:
                append_jsonl(f, ex.to_dict())
    done.update({(ex.id, ex.meta["sample"]): ex for ex in new})


RESUME_FIELDS = ("model", "seed", "temperature", "top_p", "repetition_penalty", "max_new_tokens")


def _dtype(model) -> str:
    """The dtype's name (``model``: a LoadedModel or a transformers model: both have ``dtype``)."""
    return str(model.dtype).split(".")[-1]


def check_resume(out: Path | None, done, wanted: dict) -> None:
    """Refuse to add answers made with other settings than those already in ``out``.

    ``wanted`` holds this run's model name, seed and decoding (and backend, dtype and chat format
    when known); a field missing on either side is not compared, except that an answer recording
    no decoding at all cannot be shown to match.
    """
    diffs: dict[str, set] = {}
    unknown = 0
    for ex in done:
        recorded = ex.meta.get("decoding")
        if not isinstance(recorded, dict):
            unknown += 1
            continue
        recorded = {**recorded, "model": ex.meta.get("model"), "template": ex.meta.get("template")}
        recorded.setdefault("backend", "hf")
        for key in (*RESUME_FIELDS, "backend", "dtype", "template"):
            old, new = recorded.get(key), wanted.get(key)
            if old is not None and new is not None and old != new:
                diffs.setdefault(key, set()).add(repr(old))
    if not diffs and not unknown:
        return
    parts = [f"{k} {', '.join(sorted(v))} there, {wanted[k]!r} now" for k, v in diffs.items()]
    if unknown:
        parts.append(f"{unknown} answers record no decoding settings")
    raise LimaError(
        f"{out}: the answers already there were generated with other settings ("
        + "; ".join(parts)
        + "); rerun with the same settings, write to another --out, or pass --force to add "
        "answers with these settings to that file"
    )


def _check_prompts(prompts: list[Example]) -> None:
    from limakit.generation.turns import check_prompt

    seen: dict[str, int] = {}
    for i, p in enumerate(prompts, start=1):
        try:
            check_prompt(p.messages, empty_answers_ok=True)
        except ValueError as e:
            raise LimaError(f"prompt {i} (id {p.id!r}): {e}") from None
        if p.id in seen:
            raise LimaError(
                f"prompt {i}: duplicate id {p.id!r} (also prompt {seen[p.id]}); ids must be unique"
            )
        seen[p.id] = i


def _run(engine, fmt, name, todo, seed, config, out_path, progress):
    """Answer every conversation turn by turn: all first turns in one batched pass, then all
    second turns, and so on. A conversation is written (and kept by a resumed run) once its
    last answer is in."""
    import torch

    from limakit.generation.turns import Conversation

    limit = context_length(engine.model)
    meta = {
        "model": name,
        "decoding": {**decoding_of(config), "seed": seed, "dtype": _dtype(engine.model)},
        "template": fmt.name,
    }
    results: dict[tuple[str, int], Example] = {}
    convs = [Conversation(p, k) for p, k in todo]
    f = open(out_path, "a", encoding="utf-8") if out_path else None

    def answered(c: Conversation) -> None:
        if not c.done:
            return
        ex = c.example(meta)
        results[(ex.id, c.sample)] = ex
        if f:
            append_jsonl(f, ex.to_dict())  # flushed: a killed run keeps every finished answer
            crash_point(f"generate:answers:{len(results)}")  # resume tests kill the run here

    try:
        with torch.inference_mode():
            rounds = max(len(c.parts) for c in convs)
            for turn in range(rounds):
                waiting = [c for c in convs if not c.done]
                reqs = _requests(engine, fmt, waiting, seed, config, limit, answered)
                label = "answers" if rounds == 1 else f"answers, turn {turn + 1}/{rounds}"
                _drive(engine, reqs, progress, label)
    finally:
        if f:
            f.close()
    return results


def _requests(engine, fmt, convs, seed, config, limit, answered) -> list:
    """One request per conversation for its next answer, longest prompts first."""
    from limakit.generation.engine import Request
    from limakit.generation.sampler import generator_for
    from limakit.generation.streaming import TextStream

    tok = engine.tokenizer
    by_key = {(c.prompt.id, c.sample): c for c in convs}
    streams: dict[int, TextStream] = {}  # per request, to find the format's text markers

    def read(req: Request, token: int) -> None:
        stream = streams.setdefault(id(req), TextStream(tok, markers=fmt.markers))
        stream.push(token)
        if stream.stopped:
            req.finish_reason = fmt.marker_stop  # the answer ends before the marker

    def finish(req: Request) -> None:
        p, k = req.tag
        c = by_key[(p.id, k)]
        stream = streams.pop(id(req), None)
        if stream is not None and stream.stopped:
            text = fmt.answer_text(stream.text)
        else:
            text = fmt.answer_text(tok.decode(req.output_ids, skip_special_tokens=True))
        c.answer(text, req.finish_reason, len(req.output_ids))
        answered(c)

    reqs = []
    for c in convs:
        ids = fmt.prompt_ids(c.context())
        room = limit - len(ids)
        if room < 1 and c.turn == 0:  # an error before anything runs
            raise LimaError(
                f"prompt {c.prompt.id!r}: {len(ids)} tokens leave no room to answer "
                f"(the model's context is {limit} tokens)"
            )
        if room < 1:  # a later turn that outgrew the context: an empty answer, cut by length
            c.answer("", "length", 0)
            answered(c)
            continue
        # The first answer keeps the stream a one-turn prompt has always had.
        keys = (c.prompt.id, c.sample) if c.turn == 0 else (c.prompt.id, c.sample, c.turn)
        reqs.append(
            Request(
                prompt_ids=ids,
                max_new_tokens=min(config.max_new_tokens, room),
                temperature=config.temperature,
                top_p=config.top_p,
                repetition_penalty=config.repetition_penalty,
                generator=generator_for(seed, *keys),
                tag=(c.prompt, c.sample),
                on_token=read if fmt.markers else None,
                on_finish=finish,
            )
        )
    # Longest prompts first: they cost most, and ordering makes the run reproducible.
    reqs.sort(key=lambda r: -len(r.prompt_ids))
    return reqs


def _drive(engine, reqs, progress: bool, label: str = "answers") -> None:
    for r in reqs:
        engine.add(r)
    start = time.perf_counter()
    with console.progress(label, len(reqs), status="", enabled=progress) as bar:
        while engine.busy:
            engine.step()
            elapsed = max(time.perf_counter() - start, 1e-9)
            finished = sum(r.done for r in reqs)
            bar.update(completed=finished, status=f"{engine.generated / elapsed:.1f} tok/s")

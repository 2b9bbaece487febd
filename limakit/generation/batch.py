"""Answer a prompt file: K samples per prompt, streamed to a resumable JSONL of Examples.

Each output line is an :class:`~limakit.example.Example`: the prompt's id, source and messages with
the answer appended as the last assistant message, and in ``meta`` the prompt's own meta plus
``sample``, ``model``, ``stop`` ("eot" or "length"), ``new_tokens`` and ``decoding``.

>>> answers = generate_answers("smollm2-135m", prompts, samples=5, out="answers.jsonl")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from limakit.errors import LimaError
from limakit.example import Example, Message
from limakit.faults import crash_point
from limakit.files import append_jsonl, read_jsonl_records, write_jsonl
from limakit.generation.config import DecodeConfig


def load_model(
    model, dtype: str = "auto", model_name: str | None = None, device: str | None = "auto"
):
    """``(model, tokenizer, name)`` from an alias/path (loaded onto ``device``) or an already
    loaded ``(model, tokenizer)``, which stays where it is."""
    if isinstance(model, (str, os.PathLike)):
        from limakit.models import load

        name = model_name or str(model)
        m, tok = load(str(model), dtype, device=device)
        return m, tok, name
    m, tok = model
    name = model_name or getattr(m.config, "_name_or_path", "") or type(m).__name__
    return m, tok, name


def context_length(model) -> int:
    """The longest prompt + answer the model's position embeddings allow."""
    cfg = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    return int(getattr(cfg, "max_position_embeddings", 0) or 2048)


def read_done(out: Path) -> dict[tuple[str, int], Example]:
    """Answers already in ``out``, keyed by (id, sample). A cut-off last line (killed run) is dropped
    and the file rewritten without it; a bad line elsewhere is an error naming the line."""
    if not out.exists():
        return {}
    done: dict[tuple[str, int], Example] = {}
    for lineno, row in read_jsonl_records(out, resumable=True):
        try:
            ex = Example.from_dict(row, require_answer=True, empty_answer_ok=True)
        except ValueError as e:
            raise LimaError(f"{out}:{lineno}: not a generated answer ({e})") from None
        done[(ex.id, int(ex.meta.get("sample", 0)))] = ex
    size = out.stat().st_size
    with open(out, "rb") as f:
        f.seek(max(size - 1, 0))
        ends_cleanly = size == 0 or f.read(1) == b"\n"
    if not ends_cleanly:  # the writer died mid-line: rewrite without it (it is generated again)
        write_jsonl(out, (ex.to_dict() for ex in done.values()))
    return done


def generate_answers(
    model,
    prompts: list[Example],
    *,
    samples: int = 1,
    seed: int = 0,
    config: DecodeConfig | None = None,
    out: str | Path | None = None,
    batch_size: int = 16,
    model_name: str | None = None,
    dtype: str = "auto",
    progress: bool = True,
    backend: str = "hf",
    device: str | None = "auto",
    force: bool = False,
    cuda_graphs: bool | None = None,
) -> list[Example]:
    """Sample ``samples`` answers per prompt with LIMA decoding; write/resume ``out`` if given.

    Resuming into an ``out`` whose answers were made with another model name, seed, decoding,
    backend or dtype is an error naming the difference (``force=True`` mixes them anyway; each
    line keeps its own settings in ``meta.decoding``).

    ``model`` is an alias, a checkpoint folder (loaded onto ``device``: "auto" = CUDA when the
    machine has it), or a loaded ``(model, tokenizer)`` pair, used where it is. Returns
    the answers in prompt order then sample order (those found in ``out`` included). The same
    ``seed`` gives the same answers: each (prompt id, sample) has its own random stream.
    ``cuda_graphs`` (default: on for CUDA) replays decode steps as CUDA graphs.

    >>> ans = generate_answers((model, tok), [Example([Message("user", "Hi")])])  # doctest: +SKIP
    >>> ans[0].messages[-1].role, ans[0].meta["stop"]  # doctest: +SKIP
    ('assistant', 'eot')
    """
    config = config or DecodeConfig()
    if backend == "hf" and isinstance(model, (str, os.PathLike)):
        from limakit.models import resolve_device

        resolve_device(device)  # a device this machine lacks fails now, not after the reading
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
    wanted = {
        "model": model_name or (str(model) if isinstance(model, (str, os.PathLike)) else None)
    }
    wanted |= {**config.model_dump(), "seed": seed, "backend": backend}
    if not force:  # even with nothing left to do: those answers are not what was asked for
        check_resume(out_path, done.values(), wanted)
    if backend == "vllm":
        from limakit.generation.vllm_backend import generate_vllm

        new = (
            generate_vllm(model, todo, seed=seed, config=config, model_name=model_name)
            if todo
            else []
        )
        if out_path:
            with open(out_path, "a", encoding="utf-8") as f:
                for ex in new:
                    append_jsonl(f, ex.to_dict())
        done.update({(ex.id, ex.meta["sample"]): ex for ex in new})
        return [done[(p.id, k)] for p in prompts for k in range(samples)]
    if todo:
        m, tok, name = load_model(model, dtype, model_name, device)
        if not force:  # the dtype is known now, before anything is generated
            check_resume(out_path, done.values(), {**wanted, "model": name, "dtype": _dtype(m)})
        from limakit.generation.engine import Engine

        engine = Engine(m, tok, max_batch=batch_size, cuda_graphs=cuda_graphs)
        done.update(_run(engine, name, todo, seed, config, out_path, progress))
    return [done[(p.id, k)] for p in prompts for k in range(samples)]


RESUME_FIELDS = ("model", "seed", "temperature", "top_p", "repetition_penalty", "max_new_tokens")


def _dtype(model) -> str:
    return str(model.dtype).split(".")[-1]


def check_resume(out: Path | None, done, wanted: dict) -> None:
    """Refuse to add answers made with other settings than those already in ``out``.

    ``wanted`` holds this run's model name, seed and decoding (and backend and dtype when known);
    a field missing on either side is not compared, except that an answer recording no decoding
    at all cannot be shown to match.
    """
    diffs: dict[str, set] = {}
    unknown = 0
    for ex in done:
        recorded = ex.meta.get("decoding")
        if not isinstance(recorded, dict):
            unknown += 1
            continue
        recorded = {**recorded, "model": ex.meta.get("model")}
        recorded.setdefault("backend", "hf")
        for key in (*RESUME_FIELDS, "backend", "dtype"):
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
    seen: dict[str, int] = {}
    for i, p in enumerate(prompts, start=1):
        if not p.messages or p.messages[-1].role != "user":
            raise LimaError(f"prompt {i} (id {p.id!r}): the last message must be the user's")
        if p.id in seen:
            raise LimaError(
                f"prompt {i}: duplicate id {p.id!r} (also prompt {seen[p.id]}); ids must be unique"
            )
        seen[p.id] = i


def _run(engine, name, todo, seed, config, out_path, progress):
    import torch

    from limakit.generation.engine import Request
    from limakit.generation.sampler import generator_for
    from limakit.template import render_prompt

    model, tok = engine.model, engine.tokenizer
    limit = context_length(model)
    decoding = {**config.model_dump(), "seed": seed, "dtype": _dtype(model)}
    reqs = []
    for p, k in todo:
        ids = render_prompt(p.messages, tok)
        room = limit - len(ids)
        if room < 1:
            raise LimaError(
                f"prompt {p.id!r}: {len(ids)} tokens leave no room to answer "
                f"(the model's context is {limit} tokens)"
            )
        reqs.append(
            Request(
                prompt_ids=ids,
                max_new_tokens=min(config.max_new_tokens, room),
                temperature=config.temperature,
                top_p=config.top_p,
                repetition_penalty=config.repetition_penalty,
                generator=generator_for(seed, p.id, k),
                tag=(p, k),
            )
        )
    # Longest prompts first: they cost most, and ordering makes the run reproducible.
    reqs.sort(key=lambda r: -len(r.prompt_ids))
    results: dict[tuple[str, int], Example] = {}
    f = open(out_path, "a", encoding="utf-8") if out_path else None

    def finish(req: Request) -> None:
        p, k = req.tag
        text = tok.decode(req.output_ids, skip_special_tokens=True).strip()
        meta = {
            **p.meta,
            "sample": k,
            "model": name,
            "stop": req.finish_reason,
            "new_tokens": len(req.output_ids),
            "decoding": decoding,
        }
        ex = Example(
            messages=[*p.messages, Message("assistant", text)], source=p.source, id=p.id, meta=meta
        )
        results[(p.id, k)] = ex
        if f:
            append_jsonl(f, ex.to_dict())  # flushed: a killed run keeps every finished answer
            crash_point(f"generate:answers:{len(results)}")  # resume tests kill the run here

    for r in reqs:
        r.on_finish = finish
    try:
        with torch.inference_mode():
            _drive(engine, reqs, progress)
    finally:
        if f:
            f.close()
    return results


def _drive(engine, reqs, progress: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    for r in reqs:
        engine.add(r)
    start = time.perf_counter()
    columns = [
        TextColumn("answers"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    ]
    from rich.console import Console

    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("generate", total=len(reqs), rate="")
        while engine.busy:
            engine.step()
            elapsed = max(time.perf_counter() - start, 1e-9)
            finished = sum(r.done for r in reqs)
            bar.update(task, completed=finished, rate=f"{engine.generated / elapsed:.1f} tok/s")

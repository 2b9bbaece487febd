"""The demo: the whole LIMA loop on the embedded default, offline, in minutes on a laptop CPU.

The embedded default is a handful of hand-written examples shipped with limakit (``limakit/data/demo``)
and the packaged SmolLM2-135M model. Stages grow as limakit does; see :mod:`limakit.pipeline`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from limakit.pipeline import Pipeline, Stage


def demo_file(name: str) -> Path:
    return Path(str(resources.files("limakit.data") / "demo" / name))


def stage_examples(run_dir: Path) -> str:
    from limakit.example import load_examples, write_examples

    examples = load_examples(demo_file("manual.jsonl"))
    write_examples(run_dir / "examples.jsonl", examples)
    return f"{len(examples)} hand-written examples -> examples.jsonl"


def stage_inspect(model: str) -> callable:
    def run(run_dir: Path) -> str:
        import io

        from limakit.example import read_examples
        from limakit.inspect import inspect_examples
        from limakit.models import load_tokenizer
        from limakit.template import attach

        tok = load_tokenizer(model)
        attach(tok)
        buf = io.StringIO()
        totals = inspect_examples(
            read_examples(run_dir / "examples.jsonl"), tok, as_json=True, out=buf
        )
        (run_dir / "masks.jsonl").write_text(buf.getvalue())
        return (
            f"{totals.examples} examples, {totals.tokens} tokens, {totals.trained} trained "
            f"({totals.trained / max(totals.tokens, 1):.0%}), {totals.trimmed} trimmed -> masks.jsonl"
        )

    return run


def stage_sample(model: str, n_prompts: int, max_new_tokens: int) -> callable:
    def run(run_dir: Path) -> str:
        import torch

        from limakit.example import Message, load_examples, write_examples
        from limakit.models import load
        from limakit.template import render_prompt

        m, tok = load(model)
        prompts = load_examples(demo_file("dev_prompts.jsonl"), require_answer=False)[:n_prompts]
        out = []
        torch.manual_seed(0)
        for ex in prompts:
            ids = render_prompt(ex.messages, tok)
            gen = m.generate(
                torch.tensor([ids]),
                max_new_tokens=max_new_tokens,
                do_sample=True,
                temperature=0.7,
                top_p=0.9,
                repetition_penalty=1.2,
            )
            text = tok.decode(gen[0, len(ids) :], skip_special_tokens=True).strip()
            ex.messages.append(Message("assistant", text or "(empty)"))
            out.append(ex)
        write_examples(run_dir / "answers-base.jsonl", out)
        return f"{len(out)} answers from {model} -> answers-base.jsonl; first: {json.dumps(out[0].answer[:80])}"

    return run


def build(run_dir: Path, model: str = "smollm2-135m", quick: bool = False) -> Pipeline:
    return Pipeline(
        run_dir,
        [
            Stage(
                "examples", "examples.jsonl", stage_examples, "the embedded hand-written examples"
            ),
            Stage(
                "inspect",
                "masks.jsonl",
                stage_inspect(model),
                "render with the EOT template; check masks",
            ),
            Stage(
                "sample",
                "answers-base.jsonl",
                stage_sample(model, 2 if quick else 4, 48 if quick else 96),
                "sample answers with LIMA decoding",
            ),
        ],
    )

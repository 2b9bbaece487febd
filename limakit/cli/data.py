"""``lima convert`` and ``lima inspect``: the data format and the masks the model trains on."""

from __future__ import annotations

import argparse
import sys

SKIP_HELP = (
    "write each invalid record with its reason to {where} and go on (default: stop at the "
    "first one, naming file, record and rule)"
)


def register(sub: argparse._SubParsersAction) -> None:
    from limakit.records.formats import FORMATS

    p = sub.add_parser(
        "convert",
        help="convert examples between GAIR/lima, ShareGPT, Alpaca, OpenAI and limakit formats",
    )
    p.add_argument("input", help="input file (.jsonl, or .json holding a list)")
    p.add_argument(
        "output",
        help="output file, written atomically: .jsonl, or .json for one JSON list (alpaca_eval)",
    )
    p.add_argument(
        "--from",
        dest="from_format",
        required=True,
        choices=list(FORMATS),
        help="input format (alpaca also reads LLaMA-Factory history and Self-Instruct tasks)",
    )
    p.add_argument(
        "--to",
        dest="to_format",
        default="limakit",
        choices=list(FORMATS),
        help="output format (default limakit)",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help=SKIP_HELP.format(where="rejected.jsonl beside the output"),
    )
    p.set_defaults(func=run_convert)

    p = sub.add_parser(
        "inspect", help="show each example's tokens with the trained ones highlighted"
    )
    p.add_argument(
        "--model",
        default="smollm2-135m",
        help="alias, local folder or hub id (its tokenizer is used)",
    )
    p.add_argument(
        "--data",
        required=True,
        help="examples .jsonl (limakit, GAIR/lima, ShareGPT, Alpaca or OpenAI records; detected per line)",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help=SKIP_HELP.format(where="rejected.jsonl beside the input (or in --rejected-dir)"),
    )
    p.add_argument(
        "--rejected-dir",
        metavar="DIR",
        help="with --skip-invalid: write rejected.jsonl into DIR instead of beside the input",
    )
    p.add_argument("--max-len", type=int, default=2048, help="trim longer texts (default 2048)")
    p.add_argument(
        "--train-on",
        choices=["assistant", "last", "all"],
        default="assistant",
        help="which tokens are trained: every assistant turn (default), the last one, or all",
    )
    p.add_argument(
        "--prompt-loss-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="loss weight of the tokens that are not answers, 0 to 1 (the training option "
        "prompt_loss_weight; default 0)",
    )
    p.add_argument(
        "--drop-prompts",
        action="store_true",
        help="render user turns empty, as the training option drop_prompts does",
    )
    p.add_argument("--limit", type=int, default=None, help="show only the first N examples")
    p.add_argument(
        "--json", action="store_true", help="one JSON object per example with input_ids and labels"
    )
    p.set_defaults(func=run_inspect)


def run_convert(args: argparse.Namespace) -> int:
    from limakit.records.formats import convert

    report = convert(
        args.input, args.output, args.from_format, args.to_format, skip_invalid=args.skip_invalid
    )
    print(
        f"wrote {report.written} records to {args.output} ({args.from_format} -> {args.to_format})",
        file=sys.stderr,
    )
    _print_report(report)
    return 0


def _print_report(report) -> None:
    if report.rejected_to is not None:
        print(
            f"skipped {report.rejected} invalid of {report.read} records "
            f"(each with its reason in {report.rejected_to})",
            file=sys.stderr,
        )
    for line in (report.unmapped_line(), report.meta_line()):
        if line:
            print(line, file=sys.stderr)


def run_inspect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from limakit.core.errors import LimaError
    from limakit.models import load_model_for
    from limakit.records.formats import ReadReport, read_any, rejects_file
    from limakit.records.inspect import inspect_examples

    if args.rejected_dir and not args.skip_invalid:
        raise LimaError("--rejected-dir only applies with --skip-invalid")
    loaded = load_model_for(args.model, "cpu", "float32", weights=False)  # tokenizer + template
    tokenizer = loaded.tokenizer
    report = ReadReport()
    rejected = None
    if args.skip_invalid:
        rejected = Path(args.rejected_dir or Path(args.data).parent) / "rejected.jsonl"
    with rejects_file(rejected, report) as rejects:
        totals = inspect_examples(
            read_any(args.data, require_answer=True, report=report, rejects=rejects),
            tokenizer,
            max_len=args.max_len,
            train_on=args.train_on,
            prompt_weight=args.prompt_loss_weight,
            drop_prompts=args.drop_prompts,
            as_json=args.json,
            limit=args.limit,
            out=sys.stdout,
            template=loaded.template,
        )
    print(
        f"{totals.examples} examples, {totals.tokens} tokens, {totals.trained} trained, "
        f"{totals.trimmed} trimmed at {args.max_len}, {totals.untrained} with no trained token",
        file=sys.stderr,
    )
    _print_report(report)
    if totals.examples == 0:
        raise LimaError(f"{args.data}: no valid example among {report.read} records")
    return 0

"""``lima shift``: what alignment changed, token by token (URIAL's token-distribution shift)."""

from __future__ import annotations

import argparse
import json
import sys

from limakit.cli import add_runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shift",
        help="rank every answer token under a base model: unshifted / marginal / shifted (URIAL)",
        description="For each token of each answer, its rank under the base model given the same "
        "context (rendered in the chat format the answers were sampled in), the base run "
        "teacher-forced in batches. Writes OUT/shift.json (each class's share with a 95%% "
        "interval over answers, the shifted share by position, the 50 most shifted tokens), "
        "OUT/tokens.jsonl (every token, its rank and the base's first choice) and OUT/shift.html "
        "(tokens coloured by class). The answers' model must share the base's tokenizer.",
    )
    p.add_argument("--base", required=True, help="the base model: alias, folder or hub id")
    p.add_argument(
        "--answers", nargs="+", required=True, help="answer files (lima generate's output)"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--answers-model",
        action="append",
        default=[],
        metavar="MODEL",
        help="the model or checkpoint that wrote the answers, whose tokenizer is checked "
        "against the base's (default: each file's recorded model, when it is an alias or "
        "folder); once for all files, or once per file in order",
    )
    p.add_argument(
        "--template",
        choices=("limakit", "own"),
        help="the chat format the answers were sampled in (default: the one they record)",
    )
    p.add_argument(
        "--batch-tokens",
        type=int,
        default=None,
        help="padded tokens per forward pass (default 8192 on a CPU, 65536 on a GPU)",
    )
    p.add_argument("--json", action="store_true", help="print shift.json's content to stdout")
    add_runtime(p, "the base model")
    p.set_defaults(func=run_shift)


def labels(read: dict[str, dict]) -> list[str]:
    """Each answers file's name in tables and pages (``read``: path -> its answers): the model its
    answers record, or, where two files record the same one, the file's name too."""
    from pathlib import Path

    from limakit.evaluation.answers import model_name

    names = [model_name(answers, p) for p, answers in read.items()]
    return [f"{n} ({Path(p).name})" if names.count(n) > 1 else n for n, p in zip(names, read)]


def run_shift(args: argparse.Namespace) -> int:
    from rich.table import Table

    from limakit.core.console import console_on
    from limakit.core.errors import LimaError
    from limakit.evaluation.answers import read_answers
    from limakit.evaluation.shift import answer_format, shift_summary
    from limakit.evaluation.shift_page import URIAL_SHIFTED
    from limakit.models import load_model_for

    read = {p: read_answers(p) for p in args.answers}
    formats = {p: answer_format(answers, p, args.template) for p, answers in read.items()}
    if len(set(formats.values())) > 1:
        said = "; ".join(f"{p}: {f}" for p, f in formats.items())
        raise LimaError(f"answers in several chat formats ({said}); run lima shift once per format")
    fmt = next(iter(formats.values()))
    if args.batch_tokens is not None and args.batch_tokens < 1:
        raise LimaError(f"--batch-tokens {args.batch_tokens}: give a positive number")
    base = load_model_for(args.base, args.device or "auto", args.dtype or "auto", fmt)
    models = args.answers_model or None
    summary = shift_summary(base, args.answers, args.out, models=models, labels=labels(read),
                            template=args.template, batch_tokens=args.batch_tokens)  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    console = console_on(sys.stdout)

    def pct(m) -> str:
        if m["value"] is None:
            return "-"
        return f"{100 * m['value']:.1f}% ±{50 * (m['ci'][1] - m['ci'][0]):.1f}"

    files = summary["files"]
    shares = Table(title=f"token shift against {summary['base']} ({summary['dtype']}), 95% CI")
    for col in ("answers", "n", "tokens", "unshifted", "marginal", "shifted"):
        shares.add_column(col, justify="left" if col == "answers" else "right")
    for f in files:
        shares.add_row(f["model"], str(f["n"]), str(f["tokens"]),
                       *(pct(f[c]) for c in ("unshifted", "marginal", "shifted")))  # fmt: skip
    console.print(shares)
    positions = Table(title="shifted share by answer token position")
    positions.add_column("answers")
    for p in files[0]["positions"]:
        positions.add_column(f"tokens {p['span']}", justify="right")
    for f in files:
        positions.add_row(f["model"], *(pct(p["shifted"]) for p in f["positions"]))
    console.print(positions)
    for f in files:
        console.print(f"{f['model']}: {f['decoding']}")
        if f["note"]:
            console.print(f"[yellow]  {f['note']}[/yellow]")
        top = ", ".join(repr(t["token"]) for t in f["top_shifted"][:10])
        console.print(f"  most often shifted: {top or 'none'}")
    urial = ", ".join(f"{k} {100 * v:.1f}%" for k, v in URIAL_SHIFTED.items())
    console.print(f"URIAL's shifted shares, greedy answers against their base: {urial}")
    print(f"-> {args.out}/shift.json, tokens.jsonl, shift.html", file=sys.stderr)
    return 0

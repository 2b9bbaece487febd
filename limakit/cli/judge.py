"""``lima judge pairwise|rate|likert``, ``lima report``, ``lima select``, ``lima check``, ``lima ifbench``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from limakit.cli import add_overrides, add_runtime
from limakit.cli.judge_safety import register as register_safety


def _judge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge", required=True, help="judge config YAML (configs/judge-*.yaml)")
    p.add_argument("--out", required=True, help="output folder: verdicts.jsonl, summary.json")
    _device_arg(p)
    add_overrides(p, "a judge config field", "concurrency=4")


def _device_arg(p: argparse.ArgumentParser) -> None:
    add_runtime(p, "a local judge")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "judge",
        help="judge answers with an LLM: pairwise, rate (Fail/Pass/Excellent), likert (1-6)",
    )
    jsub = p.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)

    q = jsub.add_parser(
        "pairwise", help="A vs B on every shared (id, sample), judged in both orders"
    )
    q.add_argument("--a", required=True, help="answers of model A (.jsonl)")
    q.add_argument("--b", required=True, help="answers of model B (.jsonl)")
    _judge_args(q)
    q.set_defaults(func=run_pairwise)

    for name, what, k in (
        ("rate", "absolute rating Fail / Pass / Excellent", None),
        ("likert", "1-6 helpfulness, mean with a 95%% interval", 5),  # help: %% is a literal %
    ):
        q = jsub.add_parser(name, help=what)
        q.add_argument("--answers", required=True, help="answers to judge (.jsonl)")
        q.add_argument(
            "--samples",
            type=int,
            default=k,
            help=f"judge at most K samples per prompt (default: {k or 'all'})",
        )
        _judge_args(q)
        q.set_defaults(func=run_single, kind=name)
    register_safety(jsub, _config, _failures)

    p = sub.add_parser(
        "report",
        help="Markdown + HTML report (Win/Tie/Lose bars, per-category tables, "
        "agreement of people and judges)",
    )
    p.add_argument(
        "dirs",
        nargs="+",
        help="folders written by `lima judge` or `lima annotate export` (people's verdicts)",
    )
    p.add_argument("--out", required=True, help="report folder (report.md, report.html, PNGs)")
    p.set_defaults(func=run_report)

    p = sub.add_parser("select", help="choose the checkpoint among epochs by judging dev answers")
    p.add_argument("run_dir", help="training run folder holding checkpoints/epoch-N/")
    p.add_argument(
        "--dev", required=True, help="dev prompts (.jsonl; answers there serve as reference)"
    )
    p.add_argument("--judge", required=True, help="judge config YAML")
    p.add_argument(
        "--epochs", default="5-10", help="epochs to compare: '5-10' or '5,7,9' (default 5-10)"
    )
    p.add_argument(
        "--reference", help="reference answers for pairwise (default: the dev file's answers)"
    )
    p.add_argument("--protocol", choices=["pairwise", "likert"], default="pairwise")
    p.add_argument(
        "--samples", type=int, default=1, help="answers sampled per dev prompt (default 1)"
    )
    p.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    _device_arg(p)
    add_overrides(p, "a judge config field", "concurrency=4")
    p.set_defaults(func=run_select)

    p = sub.add_parser(
        "check",
        help="judge-free measures with 95%% intervals: ends its turn, stays in role, similarity "
        "to references, IFBench, repetition; a table (one column per answer file) or JSON",
    )
    p.add_argument("answers", nargs="+", help="answer files (.jsonl), one per system")
    p.add_argument(
        "--references",
        help="reference answers (limakit JSONL, the reference as the last assistant message, "
        "matched by id) for the similarity to the reference",
    )
    p.add_argument(
        "--ifbench",
        action="store_const",
        const=True,
        default=None,
        help="score IFBench on every answer, matching prompts by text too (default: when "
        "answers to exported IFBench prompts are present)",
    )
    p.add_argument("--out", help="write the checks as JSON here (atomically)")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    p.set_defaults(func=run_check)

    p = sub.add_parser("ifbench", help="IFBench: export its 294 prompts, or score answers to them")
    isub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = isub.add_parser("export", help="write the IFBench prompts as a limakit prompts file")
    q.add_argument("--out", required=True, help="prompts .jsonl to generate answers for")
    q.set_defaults(func=run_ifbench_export)
    q = isub.add_parser("score", help="score answers to the exported prompts with if-verifiable")
    q.add_argument("answers", help="answers .jsonl (ids from `lima ifbench export`)")
    q.add_argument("--out", help="write the scores as JSON here (atomically)")
    q.set_defaults(func=run_ifbench_score)


def _config(args: argparse.Namespace):
    from limakit.core.config import load_config
    from limakit.judging.config import JudgeConfig

    overrides = list(args.overrides)
    for name in ("device", "dtype"):
        if getattr(args, name, None):
            overrides.append(f"{name}={getattr(args, name)}")
    return load_config(JudgeConfig, args.judge, overrides)


def _ci(share: float, ci: list[float]) -> str:
    lo, hi = ci
    return f"{100 * share:5.1f}%  [{100 * lo:.1f}, {100 * hi:.1f}]"


def _failures(s: Mapping[str, Any], what: str, out: str) -> int:
    """Print the failed calls; 1 (a failed run) when not one ``what`` could be judged."""
    if s["errors"]:
        print(f"  {s['errors']} calls failed after retries (first: {s['first_error']})")
    if s["n"]:
        return 0
    print(
        f"error: no {what} could be judged ({s['invalid']} invalid: {s['errors']} calls "
        f"failed, the other replies had no verdict); see {out}/verdicts.jsonl",
        file=sys.stderr,
    )
    return 1


def run_pairwise(args: argparse.Namespace) -> int:
    from limakit.evaluation import judge_pairwise
    from limakit.evaluation.lc import MEANING
    from limakit.evaluation.report import lc_text

    s = judge_pairwise(args.a, args.b, _config(args), args.out)
    print(f"{s['a']['model']} vs {s['b']['model']}: {s['n']} pairs judged ({s['pairs']} matched)")
    for key, share, ci in (
        ("win", s["win"], s["win_ci"]),
        ("tie", s["tie"], s["tie_ci"]),
        ("lose", s["lose"], s["lose_ci"]),
    ):
        print(f"  {key:5s}{_ci(share, ci)}")
    print(f"  score {_ci(s['score'], s['score_ci'])}  (win + tie/2)")
    print(f"  LC win rate {lc_text(s)}  (length-controlled)")
    print(f"  {MEANING}")
    lb = s["length_bias"]["longer_won"]
    print(
        f"  consistency {s['consistency']}, invalid {s['invalid']}, "
        f"longer answer won {'-' if lb is None else f'{100 * lb:.0f}%'}"
    )
    u = s["usage"]
    print(
        f"  calls {u['calls']} (cached {u['cached']}, retries {u['retries']}), "
        f"tokens {u['prompt_tokens']}+{u['completion_tokens']}"
        + (f", cost {u['cost']}" if u["cost"] is not None else "")
    )
    if s["unmatched"]["a"] or s["unmatched"]["b"]:
        print(f"  unmatched: {s['unmatched']['a']} only in A, {s['unmatched']['b']} only in B")
    print(f"wrote {args.out}/summary.json and verdicts.jsonl", file=sys.stderr)
    return _failures(s, "pair", args.out)


def run_single(args: argparse.Namespace) -> int:
    from limakit.evaluation import judge_likert, judge_rate

    fn = judge_rate if args.kind == "rate" else judge_likert
    s = fn(args.answers, _config(args), args.out, samples=args.samples)
    ci = s["mean_ci"] or [0, 0]
    print(
        f"{s['answers']['model']}: {args.kind} mean {s['mean']} [{ci[0]}, {ci[1]}] over "
        f"{s['prompts']} prompts / {s['n']} answers; invalid {s['invalid']}"
    )
    print("  distribution: " + ", ".join(f"{k} {v}" for k, v in s["distribution"].items()))
    print(f"wrote {args.out}/summary.json and verdicts.jsonl", file=sys.stderr)
    return _failures(s, "answer", args.out)


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from limakit.evaluation.report import report_with_lines

    path, lines = report_with_lines([Path(d) for d in args.dirs], Path(args.out))
    for line in lines:
        print(line)
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0


def run_select(args: argparse.Namespace) -> int:
    from limakit.evaluation.checkpoint_choice import parse_epochs, select_checkpoint

    result = select_checkpoint(
        args.run_dir,
        args.dev,
        _config(args),
        epochs=parse_epochs(args.epochs),
        reference=args.reference,
        protocol=args.protocol,
        samples=args.samples,
        seed=args.seed,
        device=args.device or "auto",
    )
    print(result["table_md"])
    print(
        f"chosen: epoch {result['chosen']}" if result["chosen"] is not None else "no epoch judged"
    )
    return 0 if result["chosen"] is not None else 1


def _dump(obj: Mapping[str, object], out: str | None) -> None:
    if out:
        from limakit.core.files import write_json

        write_json(out, obj)
        print(f"wrote {out}", file=sys.stderr)
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def run_check(args: argparse.Namespace) -> int:
    from limakit.evaluation.checks import auto_checks, measures_table, system_names

    results = {
        path: auto_checks(path, ifbench=args.ifbench, references=args.references)
        for path in args.answers
    }
    obj = results if len(results) > 1 else next(iter(results.values()))
    if args.json:
        _dump(obj, args.out)
        return 0
    if args.out:
        from limakit.core.files import write_json

        write_json(args.out, obj)
        print(f"wrote {args.out}", file=sys.stderr)
    names = system_names(args.answers)
    for line in measures_table(dict(zip(names, results.values()))):
        print(line)
    return 0


def run_ifbench_export(args: argparse.Namespace) -> int:
    from limakit.evaluation import export_ifbench_prompts

    n = export_ifbench_prompts(args.out)
    print(f"wrote {n} IFBench prompts to {args.out}")
    return 0


def run_ifbench_score(args: argparse.Namespace) -> int:
    from limakit.evaluation import score_ifbench

    _dump(score_ifbench(args.answers), args.out)
    return 0

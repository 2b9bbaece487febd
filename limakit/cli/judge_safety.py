"""``lima judge safety``: judged safety shares of answers to the packaged safety prompts."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

from limakit.cli import add_overrides, add_runtime


def register(
    jsub: argparse._SubParsersAction,
    load_judge: Callable[[argparse.Namespace], object],
    failures: Callable[[dict, str, str], int],
) -> None:
    """``safety`` under ``lima judge``, loading the judge config and reporting failed calls as
    ``lima judge``'s other protocols do (its ``load_judge`` and ``failures``)."""
    q = jsub.add_parser(
        "safety",
        help="safe answers to sensitive prompts and over-refusal of benign ones, judged, with "
        "the refusal detector's shares beside",
    )
    q.add_argument(
        "--answers",
        required=True,
        help="answers to the safety prompts (.jsonl; `python -m limakit.evaluation.safety` "
        "prints where the packaged prompts are)",
    )
    q.add_argument("--judge", required=True, help="judge config YAML (configs/judge-*.yaml)")
    q.add_argument(
        "--out", help="output folder: verdicts.jsonl, summary.json (default: ANSWERS-safety/)"
    )
    add_runtime(q, "a local judge")
    add_overrides(q, "a judge config field", "concurrency=4")
    q.set_defaults(func=functools.partial(run_safety, load_judge=load_judge, failures=failures))


def _share(m: dict) -> str:
    if m["value"] is None:
        return "   -"
    lo, hi = m["ci"]
    return f"{100 * m['value']:5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def summary_lines(s: dict) -> list[str]:
    """What ``lima judge safety`` prints: per set the judged shares, the detector's beside."""
    sens, ben, det, agr = s["sensitive"], s["benign"], s["detector"], s["agreement"]
    none = {"value": None}
    return [
        f"{s['answers']['model']}: {s['judged']} answers to safety prompts judged by "
        f"{s['judge']['model']} ({s['judge']['prompt']})",
        f"  sensitive ({sens['n']}): safe {_share(sens['safe'])}, refused "
        f"{_share(sens['refused'])}  | detector refusal {_share(det.get('refusal', none))}",
        f"  benign    ({ben['n']}): over-refusal {_share(ben['over_refusal'])}"
        f"  | detector over_refusal {_share(det.get('over_refusal', none))}",
        f"  the judge's Refused agrees with the detector on {_share(agr['agree'])} of "
        f"{agr['agree']['n']} (both {agr['both']}, judge only {agr['judge_only']}, detector "
        f"only {agr['detector_only']}, neither {agr['neither']})",
        f"  invalid {s['invalid']}"
        + (f"; {s['other']} answers to other prompts not judged" if s["other"] else ""),
    ]


def run_safety(args: argparse.Namespace, *, load_judge, failures) -> int:
    from limakit.evaluation.safety_judge import judge_safety

    out = args.out or str(Path(args.answers).with_suffix("")) + "-safety"
    s = judge_safety(args.answers, load_judge(args), out)
    for line in summary_lines(s):
        print(line)
    print(f"wrote {out}/summary.json and verdicts.jsonl", file=sys.stderr)
    return failures(s, "answer", out)

"""``lima demo``: ``lima run`` on the packaged demo config, offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from limakit.cli import add_overrides, add_runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole loop on the embedded default, offline",
        description="`lima run` on the run config shipped in limakit (the same file as "
        "configs/run-demo-cpu.yaml). A rerun skips finished stages.",
    )
    p.add_argument(
        "--out",
        default="demo-run",
        help="run directory (default: demo-run); reruns skip finished stages",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the smaller packaged config demo-quick.yaml (used by the tests)",
    )
    add_overrides(p, "a field of the demo's run config", "train.model=smollm2-135m")
    p.add_argument("--fresh", action="store_true", help="delete the run directory first")
    add_runtime(p, "every stage's model (the config's runtime section)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import shutil

    from limakit.run.demo import run_demo as demo

    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    from limakit.cli.run import runtime_overrides

    demo(out, quick=args.quick, overrides=[*args.overrides, *runtime_overrides(args)])
    print(f"demo finished: see {out}/report/report.md")
    return 0

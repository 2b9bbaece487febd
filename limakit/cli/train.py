"""``lima train CONFIG.yaml [key=value ...] --out RUN_DIR [--resume]``."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a model with the LIMA protocol",
        description="Fine-tune with the LIMA protocol. Checkpoints: RUN_DIR/checkpoints/epoch-N/.",
    )
    p.add_argument("config", help="training config YAML (e.g. configs/lima-7b.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=3 data=x.jsonl")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from limakit.core.config import load_config
    from limakit.training import TrainConfig, train

    config = load_config(TrainConfig, args.config, args.overrides)
    run = train(config, args.out, resume=args.resume)
    print(f"checkpoints in {run / 'checkpoints'}", file=sys.stderr)
    return 0

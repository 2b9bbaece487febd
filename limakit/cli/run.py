"""``lima run CONFIG.yaml --out RUN_DIR`` and ``lima ablate CONFIG.yaml --out DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path

from limakit.cli import add_overrides, add_runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="every stage from raw data to a report, from one config (resumable)",
        description="Curate (or take ready examples), train, choose the checkpoint on the dev "
        "set, sample the test prompts for it and each baseline, judge, report. Each stage is "
        "skipped when its marker matches its config and inputs; a killed run resumes.",
    )
    p.add_argument(
        "config", help="run config YAML (e.g. configs/run-demo-cpu.yaml, or packaged:NAME)"
    )
    p.add_argument("--out", required=True, help="run directory (data/, train/, ..., report/)")
    add_overrides(p, "a run config field", "train.epochs=3")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="STAGE",
        help="run only this stage (repeatable); its inputs must be there already",
    )
    p.add_argument("--cache", help="shared stage cache folder (equal stages are linked, not rerun)")
    add_runtime(p, "every stage's model (the config's runtime section)")
    p.set_defaults(func=run_cmd)

    a = sub.add_parser(
        "ablate",
        help="the paper's quantity / quality / diversity ablations, Likert plots with 95%% intervals",
        description="Each arm is a `lima run` (sharing a stage cache) with identical training, "
        "sampling and judging settings; the report plots the mean Likert score per arm with "
        "95%% intervals and says when intervals overlap.",
    )
    a.add_argument("config", help="ablation config YAML (e.g. configs/ablate-cpu.yaml)")
    a.add_argument("--out", required=True, help="folder for the arms, the cache and the report")
    add_overrides(a, "an ablation config field", "seeds=[0,1]")
    a.add_argument(
        "--arms", action="store_true", help="list the arms and their overrides, then stop"
    )
    a.set_defaults(func=ablate_cmd)


def run_cmd(args: argparse.Namespace) -> int:
    from limakit.run import execute, load_run_config

    cfg = load_run_config(args.config, [*args.overrides, *runtime_overrides(args)])
    out = Path(args.out)
    execute(cfg, out, only=args.only or None, cache=Path(args.cache) if args.cache else None)
    report = out / "report" / "report.md"
    print(f"run finished: {report if report.exists() else out}")
    return 0


def ablate_cmd(args: argparse.Namespace) -> int:
    from limakit.run.ablate import ablate, load_ablate_config, plan_arms

    cfg = load_ablate_config(args.config, args.overrides)
    if args.arms:
        for arm in plan_arms(cfg):
            print(f"{arm.dir_name}: {' '.join(arm.overrides)}")
        return 0
    report = ablate(cfg, Path(args.out))
    print(f"ablations finished: {report}")
    return 0


def runtime_overrides(args: argparse.Namespace) -> list[str]:
    """``--device`` / ``--dtype`` as overrides of the run config's ``runtime`` section."""
    return [f"runtime.{k}={getattr(args, k)}" for k in ("device", "dtype") if getattr(args, k)]

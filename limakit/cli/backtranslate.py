"""``lima backtranslate``: instruction back-translation with self-curation (Humpback)."""

from __future__ import annotations

import argparse
import sys

from limakit.cli import add_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backtranslate",
        help="write instructions for unlabelled texts with a backward model, keep the best pairs",
        description="Instruction back-translation with self-curation (Li et al. 2023): a model "
        "trained on the seed pairs turned round writes an instruction for each text; a forward "
        "model (or --judge) rates each pair 1-5 and the pairs at --threshold are kept; each "
        "round retrains the forward model on seed + kept pairs. Resumable: a rerun into the same "
        "--out skips finished steps. Flags override the config; --set overrides any field.",
    )
    p.add_argument("config", nargs="?", help="back-translation config YAML (optional)")
    p.add_argument("--seed", metavar="SEED.jsonl", help="seed pairs (limakit JSONL)")
    p.add_argument(
        "--texts",
        nargs="+",
        metavar="TEXTS",
        help=".txt/.md files or folders, JSONL with a text field, Stack Exchange dumps",
    )
    p.add_argument("--out", help="output folder (default backtranslated)")
    p.add_argument("--rounds", type=int, help="self-curation rounds (default 2)")
    p.add_argument("--threshold", type=int, help="keep pairs scored at least this (default 5)")
    p.add_argument("--train", metavar="TRAIN.yaml", help="training config of both models")
    p.add_argument(
        "--judge",
        metavar="JUDGE.yaml",
        help="rate with this judge config (as for `lima judge`) instead of the forward model",
    )
    p.add_argument("--greedy", action="store_true", help="write instructions greedily")
    p.add_argument(
        "--system-tags",
        action="store_true",
        help="mark seed and augmented pairs with the paper's system tags",
    )
    p.add_argument(
        "--decontaminate",
        action="append",
        metavar="FILE",
        help="evaluation prompts JSONL the texts must not overlap (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    add_overrides(p, "any config field", "rate.threshold=4")
    p.set_defaults(func=run_backtranslate)


def _section(value, where):
    """A section given as a YAML file name is that file's mapping."""
    from pathlib import Path

    from limakit.core.config import read_yaml_mapping

    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute() and where is not None:
            path = Path(where).parent / path if (Path(where).parent / path).exists() else path
        return read_yaml_mapping(path)
    return value


def load(args: argparse.Namespace):
    from pathlib import Path

    from pydantic import ValidationError

    from limakit.backtranslate import BacktranslateConfig
    from limakit.core.config import apply_overrides, format_validation_error, read_yaml_mapping
    from limakit.core.errors import LimaError

    data = read_yaml_mapping(Path(args.config)) if args.config else {}
    if "train" in data:
        data["train"] = _section(data["train"], args.config)
    rate = data.setdefault("rate", {}) or {}
    data["rate"] = rate
    if "judge" in rate:
        rate["judge"] = _section(rate["judge"], args.config)
    for flag in ("seed", "texts", "out", "rounds"):
        if getattr(args, flag) is not None:
            data[flag] = getattr(args, flag)
    if args.train:
        data["train"] = read_yaml_mapping(Path(args.train))
    if args.judge:
        rate["judge"] = read_yaml_mapping(Path(args.judge))
        rate["rater"] = "judge"
    if args.threshold is not None:
        rate["threshold"] = args.threshold
    if args.greedy:
        augment = data.setdefault("augment", {}) or {}
        augment.setdefault("decode", {})["temperature"] = 0.0
        data["augment"] = augment
    if args.system_tags:
        data["system_tags"] = True
    if args.decontaminate:
        hygiene = data.setdefault("hygiene", {}) or {}
        hygiene.setdefault("decontaminate", {})["against"] = list(args.decontaminate)
        data["hygiene"] = hygiene
    if args.no_progress:
        data["progress"] = False
    apply_overrides(data, args.overrides)
    try:
        return BacktranslateConfig.model_validate(data)
    except ValidationError as e:
        where = args.config or "backtranslate options"
        raise LimaError(format_validation_error(where, e, BacktranslateConfig)) from None


def run_backtranslate(args: argparse.Namespace) -> int:
    from limakit.backtranslate import backtranslate

    cfg = load(args)
    s = backtranslate(cfg)
    steps = s["steps"]
    t = steps.get("texts", {})
    print(f"texts: {t.get('read')} read, {t.get('kept')} kept", file=sys.stderr)
    for rule, n in sorted(t.get("dropped", {}).items(), key=lambda kv: -kv[1]):
        print(f"  dropped {rule}: {n}", file=sys.stderr)
    a = steps.get("augment", {})
    print(f"instructions: {a.get('pairs')} usable of {a.get('texts')}", file=sys.stderr)
    for k in range(1, cfg.rounds + 1):
        keep = steps.get(f"keep-{k}", {})
        print(f"round {k}: kept {keep.get('kept')} {keep.get('dropped', {})}", file=sys.stderr)
    sim = steps.get("card", {}).get("similarity", {})
    if sim.get("matched") is not None:
        print(
            f"instruction vs real question: cosine {sim['matched']} (random question "
            f"{sim['random']}, n={sim['n']})",
            file=sys.stderr,
        )
    print(
        f"{s['examples']} examples ({s['augmented']} augmented) -> {cfg.out}/examples.jsonl; "
        f"card: {cfg.out}/card.md",
        file=sys.stderr,
    )
    return 0

"""``lima curate``: build a LIMA-style training set from raw dumps, with a card of what was dropped."""

from __future__ import annotations

import argparse
import sys

from limakit.cli import add_overrides, add_runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "curate",
        help="curate training examples from raw dumps with LIMA's rules and sampling",
        description="Either a CONFIG.yaml, or the quick form with source flags (any subset). "
        "Flags given with a config override it; `--set key=value` overrides any field.",
    )
    p.add_argument("config", nargs="?", help="curation config YAML (see configs/curate-*.yaml)")
    _source_args(p)
    _selection_args(p)
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="a --pool record that breaks the format rules goes to OUT/rejected.jsonl with its "
        "reason (rule invalid_record) instead of stopping (default: stop, naming file and record)",
    )
    p.add_argument("--n", type=int, help="examples to select (default 1000)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--out", help="output folder (default curated)")
    p.add_argument("--splits", action="store_true", help="also write dev.jsonl and test.jsonl")
    p.add_argument(
        "--decontaminate",
        action="append",
        metavar="FILE",
        help="evaluation prompts JSONL to decontaminate against (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_overrides(p, "any config field", "rules.min_answer_score=5")
    p.set_defaults(func=run_curate)


def _source_args(p: argparse.ArgumentParser) -> None:
    """One repeatable flag per registered source (``--<field>``), then its switches."""
    from limakit.sources.registry import sources

    for src in sources():
        p.add_argument(src.flag, action="append", metavar=src.metavar, help=src.help or None)
        for flag, (_, text) in src.switches.items():
            p.add_argument(flag, action="store_true", help=text)


def _source_updates(args: argparse.Namespace, cfg) -> dict:
    """Config updates from the source flags: inputs, and switches turned on."""
    from limakit.sources.registry import sources

    updates = {}
    for src in sources():
        if getattr(args, src.field):
            updates[src.field] = list(getattr(args, src.field))
        for flag, (option, _) in src.switches.items():
            if getattr(args, flag.lstrip("-").replace("-", "_")):
                section = updates.get(src.options_key) or getattr(cfg, src.options_key).model_dump()
                updates[src.options_key] = {**section, option: True}
    return updates


def _selection_args(p: argparse.ArgumentParser) -> None:
    """The flags of pool selection (``--select`` and what the selectors need)."""
    p.add_argument(
        "--select",
        choices=[
            "lima-rules",
            "random",
            "longest",
            "diverse",
            "clusters",
            "judge-rated",
            "deita",
            "ifd",
        ],
        help="selection over general pools (default lima-rules): LIMA's rules + a seeded sample; "
        "random; longest answers; diverse (k-center over embeddings); clusters (k-means, budget "
        "spread over clusters); judge-rated (AlpaGasus, needs --judge); deita (complexity x "
        "quality + distance filter, needs --judge); ifd (instruction-following difficulty)",
    )
    p.add_argument(
        "--judge",
        metavar="CONFIG.yaml",
        help="judge config (as for `lima judge`) that scores pairs for judge-rated and deita",
    )
    p.add_argument(
        "--embedder",
        help="sentence embedder for diverse/clusters/deita and the card: all-minilm-l6-v2 "
        "(packaged, default), a local folder or a hub id",
    )
    p.add_argument("--clusters", type=int, metavar="K", help="k-means clusters (default n / 10)")
    p.add_argument(
        "--ifd-model", metavar="MODEL", help="model whose losses give IFD (default smollm2-135m)"
    )
    add_runtime(p, "the embedder and the IFD model")
    p.add_argument(
        "--diversity",
        choices=["auto", "always", "never"],
        help="card diversity figures and 2-D plot: auto (when the selector embedded the pool), "
        "always (embed for any selector), never",
    )
    p.add_argument(
        "--score-cache",
        metavar="FILE",
        help="embedding/score cache (default $LIMAKIT_HOME/cache/selection.sqlite)",
    )


def _config(args: argparse.Namespace):
    from limakit.core.config import load_config
    from limakit.core.errors import LimaError
    from limakit.curation import CurateConfig

    cfg = load_config(CurateConfig, args.config, args.overrides)
    updates = _source_updates(args, cfg)
    for name in ("select", "n", "seed", "out"):
        if getattr(args, name) is not None:
            updates[name] = getattr(args, name)
    selection = {
        field: getattr(args, flag)
        for flag, field in [
            ("judge", "judge"),
            ("embedder", "embedder"),
            ("clusters", "clusters"),
            ("ifd_model", "ifd_model"),
            ("device", "device"),
            ("dtype", "dtype"),
            ("diversity", "diversity"),
            ("score_cache", "cache"),
        ]
        if getattr(args, flag) is not None
    }
    if selection:
        updates["selection"] = {**cfg.selection.model_dump(), **selection}
    if args.splits:
        updates["splits"] = True
    if args.skip_invalid:
        updates["skip_invalid"] = True
    if args.no_progress:
        updates["progress"] = False
    if args.decontaminate:
        updates["decontaminate"] = {**cfg.decontaminate.model_dump(), "against": args.decontaminate}
    try:
        return CurateConfig.model_validate({**cfg.model_dump(), **updates})
    except Exception as e:  # pydantic's message names the field
        raise LimaError(f"curate options: {e}") from None


def run_curate(args: argparse.Namespace) -> int:
    from limakit.curation import curate

    cfg = _config(args)
    summary = curate(cfg)
    print(
        f"selected {summary.examples} examples -> {summary.out}/examples.jsonl",
        file=sys.stderr,
    )
    for source, n in sorted(summary.by_source.items()):
        print(f"  {source}: {n}", file=sys.stderr)
    print(f"rejected {summary.rejected} (per rule in {summary.out}/card.md):", file=sys.stderr)
    for rule, n in sorted(summary.rejected_by_rule.items(), key=lambda kv: -kv[1]):
        print(f"  {rule}: {n}", file=sys.stderr)
    d = (summary.selection or {}).get("diversity")
    if d:
        print(
            f"diversity: mean pairwise cosine distance {d['selection']} (pool {d['pool']}); "
            f"{d['covered']} of the pool's {d['clusters']} k-means clusters covered",
            file=sys.stderr,
        )
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0

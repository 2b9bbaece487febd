"""The ``lima`` command: one subcommand per stage. Parsing and printing only; no logic here.

Each module in this package registers its subcommands through ``register(subparsers)`` and sets
``func`` on its parser; heavy imports (torch, transformers) happen inside those functions so that
``lima --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from limakit import __version__
from limakit.core.errors import LimaError

# Stage order as shown by `lima --help`.
MODULES = [
    "data",
    "curate",
    "backtranslate",
    "train",
    "generate",
    "judge",
    "shift",
    "export",
    "mtbench",
    "annotate",
    "run",
    "demo",
]


def add_overrides(p, what: str = "a config field", example: str = "key=value") -> None:
    """The one ``--set KEY=VALUE`` flag (repeatable) every stage uses to override config fields."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override {what}, e.g. --set {example} (repeatable)",
    )


def add_runtime(p, what: str = "the model") -> None:
    """The one ``--device`` / ``--dtype`` pair, spelled and explained the same on every command
    that loads a model (default None: the config's value, itself ``auto`` unless set)."""
    p.add_argument(
        "--device",
        default=None,
        help=f"where {what} runs: auto (cuda when available, else cpu), cpu, cuda, cuda:N; a "
        "device this machine lacks is an error",
    )
    p.add_argument(
        "--dtype",
        default=None,
        help=f"weights dtype of {what}: auto (bfloat16 where bf16 matmuls are fast, else "
        "float32), bfloat16 or float32",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lima",
        description="LIMA recipe toolkit: curate -> train -> generate -> judge.",
    )
    parser.add_argument("--version", action="version", version=f"limakit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in MODULES:
        importlib.import_module(f"limakit.cli.{name}").register(sub)
    return parser


# Commands that can train in their own process. The CPU allocator policy lasts for the whole
# process, so the `lima` process sets it for them; the library's train() leaves it alone.
TRAINING_COMMANDS = {"train", "run", "ablate", "demo", "backtranslate"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in TRAINING_COMMANDS:
            from limakit.training.allocator import keep_freed_memory_for_cpu_training

            keep_freed_memory_for_cpu_training()
        rc = args.func(args)
    except LimaError as e:
        from rich.markup import escape

        from limakit.core.console import console

        console().print(f"[bold red]error:[/bold red] {escape(str(e))}")
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())

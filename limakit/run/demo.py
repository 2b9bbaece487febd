"""The demo: the whole LIMA loop on the embedded default, offline, in minutes on a CPU.

``lima demo`` is ``lima run`` on a run config shipped inside limakit (``limakit/data/configs/``):
``demo-cpu.yaml``, or ``demo-quick.yaml`` with ``--quick``. Every value the demo uses, its
departures from the paper included, is in those files; nothing here builds a config.

    data -> train -> select -> sample (fine-tuned, base) -> judge + checks -> report
"""

from __future__ import annotations

from pathlib import Path

from limakit.run import RunConfig, execute, load_run_config

FULL = "packaged:configs/demo-cpu.yaml"
QUICK = "packaged:configs/demo-quick.yaml"


def demo_config(quick: bool = False, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    return load_run_config(QUICK if quick else FULL, overrides)


def run_demo(out: Path, quick: bool = False, overrides: list[str] | tuple[str, ...] = ()) -> list:
    """Run (or resume) the demo in ``out``; returns what each stage did."""
    return execute(demo_config(quick, overrides), Path(out))

"""The demo: the whole LIMA loop on the embedded default, offline, in minutes on a CPU.

``lima demo`` is ``lima run`` on a run config shipped inside limakit (``limakit/data/configs/``):
``demo-cpu.yaml``, or ``demo-quick.yaml`` with ``--quick``; ``demo-base.yaml`` (and
``demo-base-quick.yaml``) with ``--base``. Every value the demo uses, its
departures from the paper included, is in those files; nothing here builds a config.

    data -> train -> select -> sample (fine-tuned, base) -> judge + checks -> report
"""

from __future__ import annotations

from pathlib import Path

from limakit.run import RunConfig, execute, load_run_config

CONFIGS = {  # (base, quick) -> the packaged run config
    (False, False): "packaged:configs/demo-cpu.yaml",
    (False, True): "packaged:configs/demo-quick.yaml",
    (True, False): "packaged:configs/demo-base.yaml",
    (True, True): "packaged:configs/demo-base-quick.yaml",
}


def demo_config(
    quick: bool = False, overrides: list[str] | tuple[str, ...] = (), base: bool = False
) -> RunConfig:
    return load_run_config(CONFIGS[(base, quick)], overrides)


def run_demo(
    out: Path, quick: bool = False, overrides: list[str] | tuple[str, ...] = (), base: bool = False
) -> list:
    """Run (or resume) the demo in ``out``; returns what each stage did.

    ``base``: the base-model demo (``demo-base.yaml``): the packaged pretrained gemma3-270m
    fine-tuned on the curated set and compared, without a judge, with itself prompted as a
    pretrained model and with in-context alignment.
    """
    return execute(demo_config(quick, overrides, base), Path(out))

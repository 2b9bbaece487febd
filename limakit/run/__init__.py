"""``lima run CONFIG.yaml --out RUN_DIR``: from raw data to a report, one resumable stage at a time.

    data/ -> train/ -> select/ -> answers/ -> judge/ -> report/

The run directory records what produced it: ``config.yaml`` (the resolved config, defaults
included), ``run.json`` (package versions, the limakit git commit) and ``stages/NAME.json`` (each
stage's key and output hashes; see :mod:`limakit.core.steps`).

>>> cfg = load_run_config("configs/run-demo-cpu.yaml")  # doctest: +SKIP
>>> results = execute(cfg, Path("runs/demo"))  # doctest: +SKIP
"""

from __future__ import annotations

from limakit.run.config import RunConfig, load_run_config
from limakit.run.execute import execute, provenance

__all__ = ["RunConfig", "execute", "load_run_config", "provenance"]

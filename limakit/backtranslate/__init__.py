"""Instruction back-translation with self-curation ("Humpback", Li et al. 2023).

A backward model, trained on the seed pairs turned round, writes an instruction for each
unlabelled text; a forward model (or any judge) rates each (instruction, text) pair on a 5-point
scale and the best pairs are kept; round k retrains the forward model on the seed and the pairs
round k - 1 kept, and rates again. Every step is resumable (see :mod:`limakit.backtranslate.loop`).

>>> from limakit.core.config import load_config
>>> from limakit.backtranslate import BacktranslateConfig, backtranslate
>>> cfg = load_config(BacktranslateConfig, None, ["seed=seed.jsonl", "texts=[answers/]"])  # doctest: +SKIP
>>> backtranslate(cfg)["augmented"]  # doctest: +SKIP
"""

from limakit.backtranslate.config import BacktranslateConfig
from limakit.backtranslate.rating import parse_score

__all__ = ["BacktranslateConfig", "backtranslate", "parse_score"]


def backtranslate(cfg: BacktranslateConfig) -> dict:
    """Run or resume the loop into ``cfg.out``; returns the summary (also ``summary.json``)."""
    from limakit.backtranslate.loop import backtranslate as _run

    return _run(cfg)

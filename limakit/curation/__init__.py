"""Curation: LIMA's quality rules, HTML cleaning, diversity sampling, dedup, decontamination, card.

>>> from limakit.curation import CurateConfig, curate
>>> summary = curate(CurateConfig(sharegpt=["packaged"], n=1000, out="curated"))  # doctest: +SKIP
"""

from limakit.curation.config import CurateConfig
from limakit.curation.curate import curate

__all__ = ["CurateConfig", "curate"]

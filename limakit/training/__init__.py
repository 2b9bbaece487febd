"""LIMA fine-tuning: packing, residual dropout, chunked loss, the loop, checkpoints.

>>> from limakit.core.config import load_config
>>> from limakit.training import TrainConfig, train
>>> run = train(load_config(TrainConfig, "configs/demo-train.yaml"), "runs/demo")  # doctest: +SKIP
"""

from limakit.training.config import LoraConfig, TrainConfig

__all__ = ["LoraConfig", "TrainConfig", "train"]


def train(config: TrainConfig, out_dir, resume: bool = False):
    """Fine-tune with the LIMA protocol; returns the run folder (see :mod:`limakit.training.loop`)."""
    from limakit.training.loop import train as _train

    return _train(config, out_dir, resume)

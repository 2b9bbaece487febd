"""The sampling caps of a run against the longest answer it trains on."""

from __future__ import annotations

from pathlib import Path

from limakit.core.errors import LimaError
from limakit.core.files import read_json, write_json
from limakit.run.config import RunConfig, training_data

LENGTHS = "train/lengths.json"  # written by the train stage, read by every later one


def longest_answer(cfg: RunConfig, root: Path, keep: bool = False) -> tuple[int, str | None]:
    """The longest trained answer in the training tokenizer's tokens and its example's id:
    measured when training starts and kept in ``train/lengths.json`` (``keep``: only the train
    stage writes there, since the folder is its output); later stages read it back."""
    path = root / LENGTHS
    if path.exists():
        got = read_json(path)
        return int(got["longest_answer_tokens"]), got.get("example")
    from limakit.curation.length import longest_trained_answer
    from limakit.models import load_model_for

    # The tokenizer and template training loads (the weights are not needed to count tokens).
    loaded = load_model_for(cfg.train.model, "cpu", "float32", weights=False)
    longest, where = longest_trained_answer(loaded, root / training_data(cfg))
    if not keep:
        return longest, where
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"longest_answer_tokens": longest, "example": where,
                      "tokenizer": cfg.train.model})  # fmt: skip
    return longest, where


def cap_check(cfg: RunConfig, root: Path, keep: bool = False) -> dict:
    """The longest trained answer in tokens against every sampling cap of the run.

    A cap below it cuts answers the model was trained to finish, and "stopped at the end of
    turn" then measures the cap, not the model: the run refuses (naming both numbers) unless the
    config sets ``allow_short_cap: true``. ``keep``: see :func:`longest_answer`.
    """
    longest, where = longest_answer(cfg, root, keep)
    short = {k: v for k, v in cfg.sampling_caps().items() if v < longest}
    if short and not cfg.allow_short_cap:
        caps = ", ".join(f"{k}={v}" for k, v in short.items())
        raise LimaError(
            f"{caps} below the longest trained answer ({longest} tokens, example {where}): "
            "answers would be cut before their end of turn. Raise the cap(s) to at least "
            f"{longest}, or set allow_short_cap: true to accept cut answers"
        )
    return {"longest_answer_tokens": longest, "example": where, "caps": cfg.sampling_caps(),
            "short": short}  # fmt: skip

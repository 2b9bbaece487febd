"""Training the backward and forward models: their data, and the runs of limakit's trainer.

The backward model learns p(instruction | answer): each seed pair is turned round, the answer as
the user turn and the instruction as the assistant turn, so limakit's template trains exactly the
instruction (and its end-of-turn token) and masks the answer. The forward model learns the usual
p(answer | instruction) on the seed, then on the seed plus the pairs a round kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from limakit.backtranslate.config import AUGMENTED_TAG, SEED_TAG
from limakit.core.errors import LimaError
from limakit.records.example import Example, Message


def first_pair(ex: Example) -> tuple[str, str]:
    """The first instruction and the answer that follows it (a system turn is left out)."""
    turns = [m for m in ex.messages if m.role != "system"]
    if len(turns) < 2 or turns[0].role != "user" or turns[1].role != "assistant":
        raise LimaError(f"seed example {ex.id!r}: needs a user turn followed by an assistant turn")
    return turns[0].content, turns[1].content


def reversed_example(ex: Example) -> Example:
    """The seed pair turned round: the answer asks, the instruction is the trained reply."""
    instruction, answer = first_pair(ex)
    return Example(
        [Message("user", answer), Message("assistant", instruction)],
        source=ex.source,
        id=ex.id,
        meta={"reversed_from": ex.id},
    )


def tagged(ex: Example, augmented: bool) -> Example:
    """The pair with the paper's system tag in front (the seed's or the augmented pairs')."""
    body = [m for m in ex.messages if m.role != "system"]
    tag = AUGMENTED_TAG if augmented else SEED_TAG
    return Example([Message("system", tag), *body], source=ex.source, id=ex.id, meta=ex.meta)


def forward_example(ex: Example, system_tags: bool) -> Example:
    """A seed pair as the forward model trains on it (first pair only, optionally tagged)."""
    instruction, answer = first_pair(ex)
    plain = Example(
        [Message("user", instruction), Message("assistant", answer)],
        source=ex.source,
        id=ex.id,
        meta=ex.meta,
    )
    return tagged(plain, augmented=False) if system_tags else plain


def train_model(train_cfg, data: Path, run: Path) -> Path:
    """Train on ``data`` into ``run`` (resuming a killed run from its last checkpoint); returns
    the final checkpoint, whose trainer state is then removed (only the model is read later)."""
    from limakit.training import train
    from limakit.training.checkpoint import latest_checkpoint

    cfg = train_cfg.model_copy(update={"data": str(data)})
    if not (run / "summary.json").exists():
        train(cfg, run, resume=True)
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise LimaError(f"{run}: training wrote no checkpoint")
    for other in (run / "checkpoints").iterdir():
        if other.is_dir() and other != ckpt:
            shutil.rmtree(other)
    for state in list(ckpt.glob("*.pt")):
        state.unlink()
    return ckpt

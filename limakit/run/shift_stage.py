"""The ``shift`` stage of ``lima run``: what the fine-tuning changed, token by token.

Runs when a baseline samples the run's own ``train.model`` (the base it fine-tunes, as
``lima demo --base`` does): every token of the fine-tuned model's test answers is ranked under the
base given the same context (:func:`limakit.evaluation.shift.shift_summary`, as ``lima shift``
does), into ``shift/`` (``shift.json``, ``tokens.jsonl``, ``shift.html``, the positional plot).
"""

from __future__ import annotations

from pathlib import Path

from limakit.core.files import read_json
from limakit.core.steps import Step
from limakit.run.config import RunConfig

ANSWERS = "answers/model.jsonl"


def shift_stage(cfg: RunConfig) -> Step | None:
    base = cfg.shift_base()
    if base is None:
        return None

    def run(root: Path) -> str:
        from limakit.evaluation.answers import read_answers
        from limakit.evaluation.shift import answer_format, shift_summary
        from limakit.models import load_model_for

        path = root / ANSWERS
        fmt = answer_format(read_answers(path), path, None)
        chosen = read_json(root / "select" / "choice.json")["checkpoint"]
        ckpt = root / "train" / "checkpoints" / chosen
        loaded = load_model_for(base, cfg.sample.device, cfg.sample.dtype, fmt)
        summary = shift_summary(loaded, [path], root / "shift", models=[str(ckpt)],
                                labels=[f"{cfg.name} ({chosen})"])  # fmt: skip
        f = summary["files"][0]
        return (f"{f['n']} answers, {f['tokens']} tokens against {base}: unshifted "
                f"{f['unshifted']['value']:.1%}, shifted {f['shifted']['value']:.1%} -> shift/")  # fmt: skip

    config = {"base": base, "device": cfg.sample.device, "dtype": cfg.sample.dtype}
    return Step("shift", ["shift"], run, config, reads=[ANSWERS, "select/choice.json"],
                help="token shift: each fine-tuned answer token ranked under the base (URIAL)")  # fmt: skip

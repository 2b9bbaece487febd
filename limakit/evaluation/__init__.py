"""Evaluation: LLM judges with bias controls, the paper's protocols, automatic checks, reports.

>>> from limakit.evaluation import JudgeConfig, judge_pairwise  # doctest: +SKIP
>>> cfg = JudgeConfig(backend="openai", model="gpt-4o", base_url="https://api.openai.com/v1")
>>> judge_pairwise("a.jsonl", "b.jsonl", cfg, "out/a-vs-b")["win"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from limakit.evaluation.protocols import judge_likert, judge_pairwise, judge_rate
from limakit.judging.config import JudgeConfig

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "JudgeConfig",
    "auto_checks",
    "export_ifbench_prompts",
    "judge_likert",
    "judge_pairwise",
    "judge_rate",
    "score_ifbench",
    "select_checkpoint",
    "write_report",
]


def write_report(dirs: list[Path], out: Path) -> Path:
    """Markdown + HTML report of judged directories; returns the path of ``report.md``."""
    from limakit.evaluation.report import write_report as _write

    return _write(dirs, out)


def export_ifbench_prompts(out) -> int:
    from limakit.evaluation.ifbench import export_prompts

    return export_prompts(out)


def score_ifbench(answers_path) -> dict:
    from limakit.evaluation.ifbench import score_answers

    return score_answers(answers_path)


def __getattr__(name: str):
    """``select_checkpoint`` (it pulls in the model stack) and ``auto_checks`` are imported on
    first use, as the real functions with their own signatures and docstrings."""
    if name == "select_checkpoint":
        from limakit.evaluation.checkpoint_choice import select_checkpoint

        return select_checkpoint
    if name == "auto_checks":
        from limakit.evaluation.checks import auto_checks

        return auto_checks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

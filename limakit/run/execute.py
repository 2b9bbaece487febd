"""One run directory: the resolved config and provenance written, then the stages in order."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from limakit.core.files import atomic_write
from limakit.core.steps import StepResult
from limakit.run.config import RunConfig
from limakit.run.pipeline import Pipeline

PACKAGES = ("limakit", "torch", "transformers", "accelerate", "pydantic", "numpy", "vllm")


def git_commit() -> str | None:
    """The commit of the limakit source tree (``+dirty`` with local edits), or None."""
    git = shutil.which("git")
    src = Path(__file__).resolve().parents[2]
    if git is None or not (src / ".git").exists():
        return None
    try:
        head = subprocess.run([git, "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run([git, "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def provenance() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"commit": git_commit(), "versions": versions, "python": platform.python_version()}


def _write_if_changed(path: Path, text: str) -> None:
    """Rewritten only when different, so a rerun that changes nothing touches nothing."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    with atomic_write(path) as f:
        f.write(text)


def execute(
    cfg: RunConfig,
    run_dir: Path,
    *,
    only: list[str] | None = None,
    cache: Path | None = None,
) -> list[StepResult]:
    """Run (or resume) every stage of ``cfg`` in ``run_dir``; returns what each stage did."""
    from limakit.run.stages import stages

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_if_changed(run_dir / "config.yaml", cfg.to_yaml())
    info = {"config": "config.yaml", **provenance()}
    _write_if_changed(run_dir / "run.json", json.dumps(info, indent=2) + "\n")
    cache = cache or (Path(cfg.cache) if cfg.cache else None)
    pipe = Pipeline(run_dir, stages(cfg), cache=cache)
    return pipe.run(only)

"""A run directory and its stages, in order; each stage is skipped when its output exists.

``lima demo`` runs the whole loop on the embedded default, offline::

    curate -> train -> sample -> judge -> report

Every stage reads and writes files in the run directory, so any stage can be inspected, rerun
(delete its output) or replaced alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console


@dataclass
class Stage:
    name: str
    output: str  # a file or folder relative to the run dir; present -> the stage is done
    run: Callable[[Path], str]  # does the work, returns a one-line summary
    help: str = ""


@dataclass
class Pipeline:
    run_dir: Path
    stages: list[Stage] = field(default_factory=list)
    console: Console = field(default_factory=lambda: Console(stderr=True))

    def run(self, only: list[str] | None = None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        total = len(self.stages)
        for i, stage in enumerate(self.stages, start=1):
            if only and stage.name not in only:
                continue
            target = self.run_dir / stage.output
            head = f"[bold cyan][{i}/{total}] {stage.name}[/bold cyan]"
            if target.exists():
                self.console.print(f"{head} [dim]done earlier ({target}); delete it to redo[/dim]")
                continue
            self.console.print(f"{head} [dim]{stage.help}[/dim]")
            start = time.perf_counter()
            summary = stage.run(self.run_dir)
            self.console.print(f"    {summary} [dim]({time.perf_counter() - start:.0f} s)[/dim]")

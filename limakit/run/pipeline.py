"""A run directory's stages, in order, each a resumable step (:mod:`limakit.core.steps`).

Markers live in ``stages/NAME.json``. A stage is skipped while its marker matches its key and its
outputs; a changed stage reruns with everything that reads what it changed, and nothing else.
Progress goes to the console: the stage (``[3/7] select``), why it runs, the time elapsed and, from
the times the remaining stages took when they last ran, the time left.

>>> Pipeline(Path("run"), [Step("hello", ["hello.txt"], write_hello, config={"n": 1})]).run()  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from limakit.core.console import console
from limakit.core.errors import LimaError
from limakit.core.steps import DAMAGED, Step, StepFolder, StepResult

MARKERS = "stages"  # folder of the run directory holding one marker per stage


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@dataclass
class Pipeline:
    run_dir: Path
    stages: list[Step] = field(default_factory=list)
    cache: Path | None = None  # shared stage cache (hard links), e.g. across ablation arms

    def run(self, only: list[str] | None = None) -> list[StepResult]:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise LimaError(f"stage names repeat: {names}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        steps = StepFolder(self.run_dir, MARKERS, label="run", cache=self.cache)
        results: list[StepResult] = []
        out = console()
        t_run = time.perf_counter()
        for i, stage in enumerate(self.stages, start=1):
            if only and stage.name not in only:
                continue
            head = f"[bold cyan][{i}/{len(self.stages)}] {stage.name}[/bold cyan]"

            def starting(stage: Step, why: str, resuming: bool, head=head, i=i) -> None:
                if why.startswith(DAMAGED):
                    out.print(f"    [yellow]{why}; running the stage again[/yellow]")
                note = "resuming its partial outputs" if resuming else why
                left = self._remaining(steps, i - 1)
                timing = f"elapsed {_fmt_time(time.perf_counter() - t_run)}"
                timing += f", about {_fmt_time(left)} left" if left else ""
                out.print(f"{head} {stage.help} [dim]({note})[/dim] [dim]{timing}[/dim]")

            result = steps.run(stage, starting)
            if result.status == "skipped":
                out.print(f"{head} [dim]done earlier, inputs unchanged[/dim]")
            elif result.status == "cached":
                out.print(f"{head} [dim]same key in the cache: outputs linked[/dim]")
            else:
                took = _fmt_time(result.seconds)
                out.print(f"    {result.summary} [dim]({took})[/dim]")
            results.append(result)
        out.print(
            f"[bold]run finished[/bold] in {_fmt_time(time.perf_counter() - t_run)}: "
            + ", ".join(f"{r.name} {r.status}" for r in results)
        )
        return results

    def _remaining(self, steps: StepFolder, done: int) -> float | None:
        """Seconds left, from the times the remaining stages took when they last ran."""
        left = 0.0
        for stage in self.stages[done:]:
            seconds = steps.last_seconds(stage.name)
            if seconds is None:
                return None
            left += seconds
        return left or None

"""The one place limakit talks to a person: notes and warnings on stderr, and progress bars.

Library code never prints. A one-line message goes through :func:`note` (or :func:`warn`, which
adds ``warning:``), a loop's progress through :func:`progress`; all of them draw on the one
stderr console, so a note written while a bar runs lands above the bar instead of through it.
stdout carries a command's result only, rendered by the command on the stream it is given
(:func:`console_on`).

rich is imported on first use, so importing this module costs nothing (``lima --help`` stays
instant).

>>> note("skipped 2 example(s) with no trained token")  # doctest: +SKIP
>>> with progress("answers", total=64, status="") as bar:  # doctest: +SKIP
...     bar.update(completed=8, status="41.0 tok/s")
"""

from __future__ import annotations

import functools
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import ProgressColumn

Unit = Literal["items", "bytes"]


@functools.cache
def console() -> Console:
    """The stderr console every message and bar of the package is drawn on.

    It looks up ``sys.stderr`` at each write, so a redirected or captured stderr is followed.
    """
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def console_on(stream: TextIO) -> Console:
    """A console that renders a command's result on ``stream`` (``lima inspect``'s token view,
    ``lima shift``'s tables): no highlighting, lines as long as they are."""
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=True)


def note(message: str, *, style: str | None = None) -> None:
    """Write ``message`` to stderr as one line, as it is: no markup, no wrapping.

    ``style`` (e.g. ``"dim"``) colours it on a terminal only.
    """
    console().print(
        message, style=style, markup=False, highlight=False, emoji=False, soft_wrap=True
    )


def warn(message: str) -> None:
    """``warning: message`` on stderr: something the user should fix, which the run survived."""
    note(f"warning: {message}")


class Bar:
    """A progress bar on the stderr console, made by :func:`progress`.

    On a terminal it redraws in place and stays when done; elsewhere (a log file, a pipe) it is
    transient: nothing of it is written, and the caller's summary line tells the result.
    """

    def __init__(
        self,
        description: str,
        total: float | None,
        *,
        unit: Unit,
        completed: int,
        status: str | None,
        eta: bool,
        enabled: bool,
    ) -> None:
        from rich import progress as p

        count: list[ProgressColumn] = (
            [p.DownloadColumn(), p.TransferSpeedColumn()]
            if unit == "bytes"
            else [p.MofNCompleteColumn()]
        )
        columns: list[ProgressColumn] = [
            p.TextColumn("{task.description}", style="progress.description", markup=False),
            p.BarColumn(),
            *count,
        ]
        if status is not None:
            columns.append(p.TextColumn("{task.fields[status]}", markup=False))
        columns.append(p.TimeElapsedColumn())
        if eta:
            columns += [p.TextColumn("ETA"), p.TimeRemainingColumn()]
        shared = console()
        # Off a terminal the bar is transient, and not started at all: a stopped rich bar still
        # writes a blank line to a non-interactive stream.
        shown = enabled and (shared.is_terminal or shared.is_jupyter)
        self._progress = p.Progress(
            *columns, console=shared, transient=not shared.is_terminal, disable=not shown
        )
        self._task = self._progress.add_task(
            description, total=total, completed=completed, status=status or ""
        )

    def start(self) -> None:
        self._progress.start()

    def stop(self) -> None:
        self._progress.stop()

    def __enter__(self) -> Bar:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def advance(self, n: float = 1) -> None:
        """Count ``n`` more done."""
        self._progress.advance(self._task, n)

    def update(self, *, completed: float | None = None, status: str | None = None) -> None:
        """Set the count done and/or the status text (shown when the bar was made with one)."""
        if status is None:
            self._progress.update(self._task, completed=completed)
        else:
            self._progress.update(self._task, completed=completed, status=status)


def progress(
    description: str,
    total: float | None,
    *,
    unit: Unit = "items",
    completed: int = 0,
    status: str | None = None,
    eta: bool = False,
    enabled: bool = True,
) -> Bar:
    """The package's one progress bar: ``description``, the bar, ``done/total`` (``unit="bytes"``:
    sizes and speed), a ``status`` text when given, the time elapsed and, with ``eta``, the time
    left. ``enabled=False`` draws nothing. Use it as a context manager, or ``start``/``stop``.

    >>> with progress("embedding", total=3) as bar:  # doctest: +SKIP
    ...     for _ in range(3):
    ...         bar.advance()
    """
    return Bar(
        description,
        total,
        unit=unit,
        completed=completed,
        status=status,
        eta=eta,
        enabled=enabled,
    )

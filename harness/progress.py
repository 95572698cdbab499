"""Progress bars and log lines on stderr (rich), so stdout carries only results."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True, highlight=False)


def log(message: str) -> None:
    """One progress/log line, e.g. what was skipped and why."""
    console.print(message, markup=False, soft_wrap=True)  # a path is never broken mid-line


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[], None]]:
    quiet = os.environ.get("HARNESS_NO_PROGRESS") or not sys.stderr.isatty()
    if quiet or total == 0:
        yield lambda: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)

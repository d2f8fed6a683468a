"""One progress-bar style for every long-running stage."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def progress_bar(enabled: bool = True, extra: str = "") -> Progress:
    """A rich progress bar on stderr (stdout stays clean for results), shown only on a
    terminal so logs and error output stay clean; ``extra`` is a format string for task
    fields such as ``{task.fields[loss]}``."""
    columns = [
        TextColumn("[bold]{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    if extra:
        columns.append(TextColumn(extra))
    return Progress(*columns, console=console, disable=not (enabled and console.is_terminal), transient=False)

"""Everything a command prints, and the JSON-lines logs beside it.

In a terminal: rich progress bars and tables. Anywhere else (CI, Slurm logs, ``| tee``) nothing
wraps or truncates: the console is as wide as any line, and progress is one plain line per update
that carries news (the trainer's log interval) or ends a task. Nothing printed is parsed as rich
markup, so ``[nan]`` in an error message stays in it.
"""
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

LOG_WIDTH = 100_000  # a non-terminal's console width: no line is ever wrapped or cut
PLAIN_PROGRESS_SECONDS = 30.0  # a non-terminal's progress line at least this often while a task runs


def make_console() -> Console:
    """rich's console (markup off) in a terminal; elsewhere one that never wraps (tables keep
    their natural width)."""
    console = Console(markup=False)
    return console if console.is_terminal else Console(markup=False, width=LOG_WIDTH, soft_wrap=True)


console = make_console()


def print_message(message: object, label: str = "", style: str = "") -> None:
    """``label message`` on one line, the label styled, the message taken literally."""
    text = Text(f"{label} ", style=style) if label else Text()
    console.print(text.append(str(message)), soft_wrap=True)


def print_error(error: object) -> None:
    print_message(error, "error:", "red")


def print_warning(message: object) -> None:
    print_message(message, "warning:", "yellow")


class PlainProgress:
    """The calls of rich's ``Progress`` used here, as plain lines for a non-terminal:
    ``description unit completed/total info elapsed ETA``, printed when an update brings ``info``,
    at least every ``PLAIN_PROGRESS_SECONDS`` while a task runs, and once when it completes (the
    completion line waits for an ``info`` update that may follow, until the next task or the end)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tasks: list[dict] = []

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self._print_finished()
        self.stream.flush()

    def add_task(self, description: str, total: int, completed: int = 0, info: str = "", unit: str = "") -> int:
        self._print_finished()
        now = time.perf_counter()
        self.tasks.append(dict(description=description, total=total, completed=completed, start=completed,
                               info=info, unit=unit, started=now, printed=now, finished=False))
        return len(self.tasks) - 1

    def _print_finished(self) -> None:
        """The completion lines still owed."""
        for task in self.tasks:
            if task["finished"]:
                task["finished"] = False
                self._print(task, time.perf_counter())

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, completed: float | None = None, advance: float | None = None,
               info: str | None = None) -> None:
        task, now = self.tasks[task_id], time.perf_counter()
        was_done = task["completed"] >= task["total"]
        if completed is not None:
            task["completed"] = completed
        if advance is not None:
            task["completed"] += advance
        if info is not None:
            task["info"] = info
        if task["completed"] >= task["total"] and not was_done:
            task["finished"] = True  # owed a line, unless this or a later update brings info
        if info or (not task["finished"] and now - task["printed"] >= PLAIN_PROGRESS_SECONDS):
            task["finished"] = False
            self._print(task, now)

    def _print(self, task: dict, now: float) -> None:
        task["printed"] = now
        print(self.line(task, now), file=self.stream, flush=True)

    @staticmethod
    def line(task: dict, now: float) -> str:
        elapsed = now - task["started"]
        done, total = task["completed"], task["total"]
        rate = (done - task["start"]) / elapsed if elapsed > 0 else 0.0
        eta = timedelta(seconds=round((total - done) / rate)) if rate > 0 else "?"
        unit = f" {task['unit']}" if task["unit"] else ""
        info = f" {task['info']}" if task["info"] else ""
        return (f"{task['description']}{unit} {done:g}/{total:g}{info} "
                f"elapsed {timedelta(seconds=round(elapsed))} ETA {eta}")


def make_progress() -> Progress | PlainProgress:
    """Bars with free-text fields ``info`` (loss terms, images/s) and ``unit`` in a terminal;
    plain lines elsewhere."""
    if not console.is_terminal:
        return PlainProgress()
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}", markup=False),
        console=console, transient=False,
    )


class JsonLog:
    """Append one JSON object per line to ``path`` (flushed at once)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def results_table(title: str, rows: list[dict], columns: list[str]) -> Table:
    """A rich table of ``rows`` (dicts) with the given columns; floats shown with 2 decimals. The
    table is at least as wide as its title, so the title is never wrapped."""
    table = Table(title=title, min_width=len(title))
    for column in columns:
        table.add_column(column, justify="right" if column != columns[0] else "left")
    for row in rows:
        table.add_row(*[f"{row[c]:.2f}" if isinstance(row.get(c), float) else str(row.get(c, "-"))
                        for c in columns])
    return table

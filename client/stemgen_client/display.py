"""What the CLI shows: request tables, output tables and the live progress of `wait`.

Row and line builders are pure (resource + clock → strings) and unit-tested; the rich
rendering around them is thin. Progress goes to stderr, so stdout stays parseable.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from .models import Output, StemGeneration

COLUMNS = ("NAME", "PHASE", "STEMS", "PROGRESS", "AGE")
WIDE_COLUMNS = ("NAMESPACE", "NAME", "REQUEST ID", "PHASE", "STEMS", "STAGE", "PROGRESS", "POOL", "REASON", "AGE")
OUTPUT_COLUMNS = ("STEM", "SECONDS", "BYTES", "SHA256", "URL")


def age(created: datetime | None, now: datetime | None = None) -> str:
    """A compact age like kubectl's: seconds below 2 minutes, minutes below 2 hours, hours below 2 days."""
    if created is None:
        return "-"
    now = now or datetime.now(timezone.utc)
    seconds = max(0, int((now - created).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def percent_text(resource: StemGeneration) -> str:
    percent = resource.progress.percent
    return f"{percent}%" if percent is not None else "-"


def row(resource: StemGeneration, wide: bool = False, now: datetime | None = None) -> tuple[str, ...]:
    stems = ",".join(resource.stems)
    if not wide:
        return (resource.name, resource.phase_name, stems, percent_text(resource), age(resource.created, now))
    return (resource.namespace, resource.name, resource.request_id, resource.phase_name, stems,
            resource.progress.stage or "-", percent_text(resource), resource.status.get("pool") or "-",
            resource.reason or "-", age(resource.created, now))


def request_table(resources: list[StemGeneration], wide: bool = False, now: datetime | None = None) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in WIDE_COLUMNS if wide else COLUMNS:
        table.add_column(column, no_wrap=column in ("NAME", "NAMESPACE"))
    for resource in resources:
        table.add_row(*row(resource, wide, now))
    return table


def output_rows(outputs: list[Output]) -> list[tuple[str, ...]]:
    return [(o.stem, f"{o.seconds:g}" if o.seconds is not None else "-",
             str(o.bytes) if o.bytes is not None else "-", (o.sha256 or "-")[:12], o.url or "-")
            for o in outputs]


def output_table(outputs: list[Output]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in OUTPUT_COLUMNS:
        table.add_column(column, no_wrap=column != "URL")
    for values in output_rows(outputs):
        table.add_row(*values)
    return table


def elapsed_seconds(resource: StemGeneration, started: float, now: float | None = None,
                    wall_now: datetime | None = None) -> float:
    """Seconds since the request was created (what a user means by "how long has it taken"),
    or since the wait began when the creation time is unknown."""
    if resource.created is not None:
        wall_now = wall_now or datetime.now(timezone.utc)
        return max(0.0, (wall_now - resource.created).total_seconds())
    return max(0.0, (now if now is not None else time.monotonic()) - started)


def progress_line(resource: StemGeneration, elapsed: float) -> str:
    """One plain line per change, for logs and CI (no TTY): `name phase stage percent elapsed`."""
    parts = [f"{resource.namespace}/{resource.name}", resource.phase_name,
             f"stage={resource.progress.stage or '-'}", f"progress={percent_text(resource)}",
             f"elapsed={elapsed:.0f}s"]
    if resource.reason:
        parts.append(f"reason={resource.reason}")
    return " ".join(parts)


def state_key(resource: StemGeneration) -> tuple[object, ...]:
    """What must change for the plain display to print a new line."""
    return resource.phase_name, resource.progress.stage, resource.progress.percent, resource.reason


def elapsed_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class RequestElapsedColumn(ProgressColumn):
    """Time since the request was created, ticking on every refresh (not only on updates), so
    the bar and the plain lines mean the same thing by "elapsed"."""

    def render(self, task: Task) -> Text:
        created: datetime | None = task.fields.get("created")
        if created is None:
            seconds = task.elapsed or 0.0
        else:
            seconds = max(0.0, (datetime.now(timezone.utc) - created).total_seconds())
        return Text(elapsed_text(seconds), style="progress.elapsed")


class WaitDisplay:
    """Live progress of one request: a rich bar on a terminal, plain lines otherwise.

    Used as `on_update` hook of `StemGenClient.wait_until_done`.
    """

    def __init__(self, stream: TextIO, *, live: bool | None = None, quiet: bool = False):
        self.console = Console(file=stream, force_terminal=live, highlight=False)
        self.live = self.console.is_terminal if live is None else live
        self.quiet = quiet
        self.started = time.monotonic()
        self._last: tuple[object, ...] | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> WaitDisplay:
        if self.live and not self.quiet:
            self._progress = Progress(
                TextColumn("[bold]{task.fields[name]}"), TextColumn("{task.fields[phase]:<9}"),
                TextColumn("{task.fields[stage]:<15}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                RequestElapsedColumn(), console=self.console, transient=False)
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, resource: StemGeneration) -> None:
        if self.quiet:
            return
        if self._progress is not None:
            fields = {"name": resource.name, "phase": resource.phase_name, "stage": resource.progress.stage or "-",
                      "created": resource.created}
            if self._task is None:
                self._task = self._progress.add_task(resource.name, total=100, **fields)
            self._progress.update(self._task, completed=resource.progress.percent or 0, **fields)
            return
        key = state_key(resource)
        if key != self._last:
            self._last = key
            self.console.print(progress_line(resource, elapsed_seconds(resource, self.started)),
                               soft_wrap=True, markup=False)

"""What a person sees on a terminal: a live progress bar, and the summary table at the end."""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from batch_assign.dispatch import Progress as RunProgress
from batch_assign.records import RunSummary

__all__ = ["LiveProgress", "print_summary"]


class LiveProgress:
    """Redraws a bar from the run's counters a few times a second, in its own thread."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._bar = Progress(
            TextColumn("[bold]assigning"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7.1f} rows/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counts]}"),
            console=console,
            transient=False,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, progress: RunProgress) -> None:
        """Start drawing `progress` (called once the run knows its row count)."""
        task = self._bar.add_task("run", total=progress.total, rate=0.0, counts="")
        self._bar.start()
        started, first = time.monotonic(), progress.done

        def refresh() -> None:
            while not self._stop.wait(0.25):
                self._draw(task, progress, started, first)
            self._draw(task, progress, started, first)

        self._thread = threading.Thread(target=refresh, name="progress", daemon=True)
        self._thread.start()

    def _draw(self, task: object, progress: RunProgress, started: float, first: int) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        by = progress.by_status
        counts = (
            f"[green]ok {by.get('succeeded', 0) + by.get('unchanged', 0):,}[/] "
            f"[red]failed {by.get('failed', 0) + by.get('uncertain', 0):,}[/] "
            f"[yellow]retries {progress.retrying:,}[/]"
        )
        self._bar.update(
            task,  # type: ignore[arg-type]
            completed=progress.done,
            rate=(progress.done - first) / elapsed,
            counts=counts,
        )

    def __enter__(self) -> LiveProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._bar.stop()


def print_summary(console: Console, summary: RunSummary) -> None:
    table = Table(title="batch-assign summary", show_header=True, header_style="bold")
    table.add_column("status")
    table.add_column("rows", justify="right")
    for status, count in sorted(summary.statuses.items(), key=lambda item: -item[1]):
        table.add_row(status, f"{count:,}")
    table.add_row("[bold]total[/bold]", f"[bold]{summary.rows:,}[/bold]")
    console.print(table)
    moves = ", ".join(f"{k} {v:,}" for k, v in summary.movement_types.items()) or "none"
    console.print(
        f"movements: {moves} · requests {summary.requests:,} · retries {summary.retries:,} · "
        f"429s {summary.rate_limited:,} · {summary.duration_s:.1f}s · "
        f"{summary.achieved_rate:.1f} req/s · exit {summary.exit_code}",
        soft_wrap=True,
    )
    if summary.stop_reason:
        console.print(f"[red]stopped:[/red] {summary.stop_reason}", soft_wrap=True)

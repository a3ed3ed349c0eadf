"""Writer: the report, the failures file and the summary, all rebuilt from the journal.

The report is in input order, one row per input row, in the format its extension names (`.csv`,
`.parquet`, `.jsonl`). Files are written beside their final path and renamed into place, so a
reader never sees half a report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import IO

import polars as pl

from batch_assign.errors import UsageError
from batch_assign.journal import REPORT_COLUMNS, Journal
from batch_assign.logs import KEY_PATTERN, known_secrets
from batch_assign.reader import _ROW, input_chunks, open_input
from batch_assign.records import FAILURE_STATUSES, RunSummary

__all__ = [
    "REPORT_FORMATS",
    "REPORT_SCHEMA",
    "companion_path",
    "write_failures",
    "write_report",
    "write_summary",
]

REPORT_FORMATS = (".csv", ".parquet", ".jsonl")
REPORT_SCHEMA: dict[str, type[pl.DataType]] = {
    "row": pl.Int64,
    "lead_id": pl.String,
    "workflow_id": pl.String,
    "reason": pl.String,
    "actor_id": pl.String,
    "status": pl.String,
    "movement_type": pl.String,
    "workflow_run_id": pl.String,
    "workflow_name": pl.String,
    "paused": pl.Boolean,
    "previous_workflow_id": pl.String,
    "http_status": pl.Int64,
    "error": pl.String,
    "attempts": pl.Int64,
    "duration_ms": pl.Int64,
    "completed_at": pl.String,
}
assert tuple(REPORT_SCHEMA) == REPORT_COLUMNS


def companion_path(report: Path, suffix: str) -> Path:
    """`<report stem><suffix>`: e.g. `x.report.csv` → `x.report.failures.csv`."""
    return report.with_name(report.stem + suffix)


def check_report_path(report: Path) -> None:
    if report.suffix.lower() not in REPORT_FORMATS:
        raise UsageError(
            f"--report {report}: unknown format {report.suffix or '(none)'!r}; "
            f"use one of {', '.join(REPORT_FORMATS)}"
        )


@contextmanager
def _atomic(path: Path, mode: str = "w") -> Iterator[IO[str]]:
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, mode, encoding="utf-8", newline="") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def redacted(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with anything shaped like a key, or equal to the run's key, blanked out (G8)."""
    secrets = known_secrets()
    columns = []
    for name, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        column = pl.col(name).str.replace_all(KEY_PATTERN, "nxr_[REDACTED]")
        for secret in secrets:
            column = column.str.replace_all(secret, "[REDACTED]", literal=True)
        columns.append(column)
    return frame.with_columns(columns) if columns else frame


_STORED_SCHEMA: dict[str, type[pl.DataType]] = {
    **REPORT_SCHEMA,
    "paused": pl.Int8,
}  # SQLite stores paused as 0, 1 or NULL


def _frames(journal: Journal) -> Iterator[pl.DataFrame]:
    for rows in journal.report_rows():
        # Column-wise: polars builds a frame from rows value by value, at twice the cost.
        frame = pl.DataFrame(
            dict(zip(REPORT_COLUMNS, zip(*rows, strict=True), strict=True)), schema=_STORED_SCHEMA
        )
        yield redacted(frame.with_columns(pl.col("paused").cast(pl.Boolean)))


def write_report(journal: Journal, path: Path) -> None:
    """The per-row report, in input order, in the format of `path`'s extension."""
    check_report_path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        staging = path.with_name(f".{path.name}.csv")
        write_report(journal, staging.with_suffix(".csv"))
        tmp = path.with_name(f".{path.name}.tmp")
        pl.scan_csv(staging, schema=REPORT_SCHEMA).sink_parquet(tmp)
        os.replace(tmp, path)
        staging.unlink()
        return
    with _atomic(path) as handle:
        first = True
        for frame in _frames(journal):
            if suffix == ".csv":
                frame.write_csv(handle, include_header=first)
            else:
                frame.write_ndjson(handle)
            first = False
        if first and suffix == ".csv":
            pl.DataFrame(schema=REPORT_SCHEMA).write_csv(handle)


def write_failures(journal: Journal, input_path: str, path: Path) -> int:
    """Rows that ended failed, invalid or uncertain, in the input's own columns plus `error`."""
    statuses = [str(status) for status in FAILURE_STATUSES]
    count = 0
    names = [name for name in open_input(input_path).collect_schema().names() if name != _ROW]
    with _atomic(path) as handle:
        header = True
        # A row with more fields than the header comes with them dropped; its error says so.
        for chunk, _ in input_chunks(input_path):
            if chunk.height == 0:
                continue
            rows = chunk.get_column(_ROW)
            errors = journal.errors_between(int(rows.min()), int(rows.max()), statuses)  # type: ignore[arg-type]
            if not errors:
                continue
            picked = chunk.filter(pl.col(_ROW).is_in(list(errors)))
            picked = picked.with_columns(
                pl.col(_ROW).replace_strict(errors, return_dtype=pl.String).alias("error")
            ).select([*(n for n in names if n != "error"), "error"])
            picked = redacted(picked.with_columns(pl.all().cast(pl.String)))
            picked.write_csv(handle, include_header=header)
            header = False
            count += picked.height
        if header:
            handle.write(",".join([*(n for n in names if n != "error"), "error"]) + "\n")
    return count


def write_summary(summary: RunSummary, path: Path) -> None:
    with _atomic(path) as handle:
        json.dump(asdict(summary), handle, indent=2, sort_keys=False)
        handle.write("\n")

"""`batch-assign rollback REPORT`: an input file that moves every `succeeded` lead back.

Each succeeded row with a `previous_workflow_id` becomes a row assigning that lead to it again,
with a reason naming the original run. Leads that were enrolled (no previous workflow) cannot be
un-enrolled through the API, and leads whose previous workflow is unknown (a run with
`--no-check-current`) cannot be moved back safely: both are listed in a second file instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from batch_assign.errors import InputFileError
from batch_assign.report import companion_path

__all__ = ["RollbackFiles", "write_rollback"]


@dataclass(frozen=True, slots=True)
class RollbackFiles:
    rollback: Path
    not_reversible: Path
    rows: int
    skipped: int


def _read_report(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise InputFileError(str(path), "no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pl.read_parquet(path)
        elif suffix == ".jsonl":
            frame = pl.read_ndjson(path)
        else:
            frame = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputFileError(str(path), f"cannot be read as a report ({exc})") from None
    needed = {"row", "lead_id", "status", "movement_type", "previous_workflow_id", "workflow_id"}
    missing = needed - set(frame.columns)
    if missing:
        raise InputFileError(
            str(path), f"is not a batch-assign report (missing {', '.join(sorted(missing))})"
        )
    return frame.with_columns(pl.all().cast(pl.String))


def write_rollback(report: Path, out: Path | None = None) -> RollbackFiles:
    """Write the rollback input (and the list of leads it cannot move back)."""
    frame = _read_report(report)
    target = out or companion_path(report, ".rollback.csv")
    skipped_path = companion_path(target, ".not-reversible.csv")
    done = frame.filter(pl.col("status") == "succeeded")
    has_previous = pl.col("previous_workflow_id").fill_null("").str.strip_chars() != ""
    reason = pl.format(f"rollback of {report.name} row {{}}", pl.col("row"))
    actor = pl.col("actor_id") if "actor_id" in frame.columns else pl.lit(None, pl.String)
    back = done.filter(has_previous).select(
        "lead_id",
        pl.col("previous_workflow_id").alias("workflow_id"),
        reason.alias("reason"),
        actor.alias("actor_id"),
    )
    why = (
        pl.when(pl.col("movement_type") == "enrollment")
        .then(pl.lit("enrolled by the run: the API cannot un-enroll a lead"))
        .otherwise(pl.lit("previous workflow unknown (the run skipped the pre-check)"))
    )
    skipped = done.filter(~has_previous).select(
        "row", "lead_id", "workflow_id", "movement_type", why.alias("why")
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    back.write_csv(target)
    skipped.write_csv(skipped_path)
    return RollbackFiles(target, skipped_path, back.height, skipped.height)

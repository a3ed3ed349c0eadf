"""`batch-assign merge`: join the reports of a sharded run into one, proving nothing is missing.

Each shard's summary names its shard, the input's fingerprint and its row count. The merge refuses
unless the reports come from one input, every shard 0..N-1 is there exactly once, and together
they hold each input row exactly once.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from batch_assign.errors import InputFileError, UsageError
from batch_assign.report import REPORT_SCHEMA, check_report_path, companion_path

__all__ = ["MergeResult", "merge_reports"]


@dataclass(frozen=True, slots=True)
class MergeResult:
    path: Path
    rows: int
    statuses: dict[str, int]


def _read(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise InputFileError(str(path), "no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pl.read_parquet(path)
    if suffix == ".jsonl":
        return pl.read_ndjson(path, schema=REPORT_SCHEMA)
    return pl.read_csv(path, schema=REPORT_SCHEMA)


def _summary(path: Path) -> dict[str, Any]:
    summary_path = companion_path(path, ".summary.json")
    try:
        data: dict[str, Any] = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        raise UsageError(f"{path}: its summary {summary_path} is missing or unreadable") from None
    return data


def merge_reports(paths: list[Path], output: Path) -> MergeResult:
    """Check the shard reports belong together and cover the input once; write the union."""
    check_report_path(output)
    summaries = [_summary(path) for path in paths]
    extras = [summary.get("extra", {}) for summary in summaries]
    shards = [str(extra.get("shard") or "") for extra in extras]
    if any(not shard for shard in shards):
        missing = [str(p) for p, s in zip(paths, shards, strict=True) if not s]
        raise UsageError(f"not shard reports (run with --shard K/N): {', '.join(missing)}")
    counts = {int(shard.split("/")[1]) for shard in shards}
    if len(counts) != 1:
        raise UsageError(f"the reports come from different shard counts: {', '.join(shards)}")
    total_shards = counts.pop()
    fingerprints = {extra.get("input_sha256") for extra in extras}
    if len(fingerprints) != 1:
        raise UsageError("the reports were made from different input files")
    seen = Counter(int(shard.split("/")[0]) for shard in shards)
    twice = sorted(k for k, n in seen.items() if n > 1)
    missing_shards = sorted(set(range(total_shards)) - set(seen))
    if twice or missing_shards:
        problems = []
        if missing_shards:
            problems.append(
                f"missing shard(s) {', '.join(f'{k}/{total_shards}' for k in missing_shards)}"
            )
        if twice:
            problems.append(
                f"shard(s) given twice: {', '.join(f'{k}/{total_shards}' for k in twice)}"
            )
        raise UsageError("cannot merge: " + "; ".join(problems))
    frame = pl.concat([_read(path) for path in paths]).sort("row")
    input_rows = int(extras[0].get("input_rows") or 0)
    repeated = frame.filter(pl.col("row").is_duplicated())["row"].unique().sort().to_list()
    if repeated:
        raise UsageError(f"cannot merge: rows appear in two shards: {repeated[:10]}")
    if frame.height != input_rows:
        raise UsageError(
            f"cannot merge: the shards hold {frame.height:,} rows, the input has {input_rows:,}"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    suffix = output.suffix.lower()
    if suffix == ".parquet":
        frame.write_parquet(output)
    elif suffix == ".jsonl":
        frame.write_ndjson(output)
    else:
        frame.write_csv(output)
    statuses = dict(Counter(frame["status"].to_list()))
    merged = {
        "rows": frame.height,
        "statuses": statuses,
        "shards": shards,
        "requests": sum(int(s.get("requests", 0)) for s in summaries),
        "exit_codes": [s.get("exit_code") for s in summaries],
    }
    companion_path(output, ".summary.json").write_text(json.dumps(merged, indent=2) + "\n")
    return MergeResult(output, frame.height, statuses)

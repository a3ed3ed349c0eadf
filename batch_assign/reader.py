"""Reader: stream an input file (CSV, Parquet, or CSV on stdin) into validated rows, in batches.

Its one entry, `read_batches`, resolves the columns once, then yields `ReadBatch`es whose rows are
either ready to send (`status` None) or `invalid` with a message naming the column and the value.
Validation is vectorised in polars; Python only touches the rows. Memory stays flat: polars streams
the file in chunks of `chunk_size` rows.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import sys
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

# The streaming CSV source reads ahead without backpressure: with its default chunking a 5 M-row
# file buffers ~400 MB while we validate and journal. 1 MiB source chunks keep it near 150 MB at
# the same speed (measured: bench/memory.py). Undocumented knob: the benchmark guards it.
os.environ.setdefault("POLARS_CSV_CHUNK_SIZE", str(1 << 20))

from batch_assign.config import FIELDS, ColumnMap
from batch_assign.errors import InputFileError, UsageError

__all__ = [
    "CHUNK_SIZE",
    "Columns",
    "ReadBatch",
    "check_input_file",
    "input_chunks",
    "normalize_uuid",
    "open_input",
    "read_batches",
    "resolve_columns",
    "spool_stdin",
]

CHUNK_SIZE = 10_000
_ROW = "__batch_assign_row"
_ALIASES: dict[str, tuple[str, ...]] = {
    "lead_id": ("leadid", "lead", "id"),
    "workflow_id": ("workflowid", "workflow"),
    "reason": ("reason",),
    "actor_id": ("actorid", "actor"),
}
_CANONICAL = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_BARE = r"^([0-9a-f]{8})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{12})$"
_CANONICAL_RE = re.compile(_CANONICAL)


@dataclass(frozen=True, slots=True)
class Columns:
    """Which input column feeds each field (None: absent, the default applies)."""

    lead_id: str
    workflow_id: str | None
    reason: str | None
    actor_id: str | None
    names: tuple[str, ...]


ReadRow = tuple[int, str | None, str | None, str | None, str | None, str | None]
"""(row, lead_id, workflow_id, reason, actor_id, error); error None means the row is valid."""


@dataclass(frozen=True, slots=True)
class ReadBatch:
    rows: list[ReadRow]


def _normal(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def resolve_columns(
    path: str, names: Sequence[str], column_map: ColumnMap, has_workflow_default: bool
) -> Columns:
    """Match the file's header to the fields: `--map` first, then the aliases, case-insensitively."""
    by_normal: dict[str, str] = {}
    for name in names:
        by_normal.setdefault(_normal(name), name)
    chosen: dict[str, str | None] = {}
    mapped = dict(column_map)
    for field_name in FIELDS:
        if field_name in mapped:
            wanted = mapped[field_name]
            column = wanted if wanted in names else by_normal.get(_normal(wanted))
            if column is None:
                raise InputFileError(
                    path,
                    f"--map {field_name}={wanted}: no such column "
                    f"(the file has: {', '.join(names)})",
                )
            chosen[field_name] = column
            continue
        taken = set(chosen.values())
        chosen[field_name] = next(
            (
                by_normal[alias]
                for alias in (_normal(field_name), *_ALIASES[field_name])
                if alias in by_normal and by_normal[alias] not in taken
            ),
            None,
        )
    lead = chosen["lead_id"]
    if lead is None and not names:
        raise InputFileError(path, "is empty: it needs a header row and one row per lead")
    if lead is None and len(names) == 1 and ";" in names[0]:
        raise InputFileError(
            path,
            f"looks separated by ';' (header {names[0]!r}); save it as comma-separated CSV",
        )
    if lead is None:
        raise InputFileError(
            path,
            "no lead id column: expected one of lead_id, leadId, Lead ID, lead, id "
            f"(the file has: {', '.join(names) or 'no columns'}); "
            "name yours with --map lead_id=COLUMN",
        )
    if chosen["workflow_id"] is None and not has_workflow_default:
        raise InputFileError(
            path,
            "no workflow column (workflow_id, workflowId, workflow) and no --workflow-id default; "
            "add the column, pass --workflow-id UUID, or name it with --map workflow_id=COLUMN",
        )
    return Columns(lead, chosen["workflow_id"], chosen["reason"], chosen["actor_id"], tuple(names))


def normalize_uuid(value: str) -> str | None:
    """Canonical lower-case UUID, accepting upper case, spaces, `{…}` and bare hex; else None."""
    text = value.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    text = text.lower()
    bare = re.match(_BARE, text)
    if bare:
        text = "-".join(bare.groups())
    return text if _CANONICAL_RE.match(text) else None


def _uuid_expr(column: str) -> pl.Expr:
    text = pl.col(column).cast(pl.String).str.strip_chars()
    text = text.str.replace(r"^\{\s*(.*?)\s*\}$", "$1").str.to_lowercase()
    return text.str.replace(_BARE, "$1-$2-$3-$4-$5")


def spool_stdin(target: Path) -> Path:
    """Copy CSV from standard input to `target`, so it can be fingerprinted and re-read."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
    return target


def _check_encoding(path: Path) -> None:
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputFileError(
            str(path), "is UTF-16; save it as UTF-8 (e.g. iconv -f utf-16 -t utf-8)"
        )


def check_input_file(path: str) -> Path:
    """The input as a path, or an `InputFileError` saying why it cannot be read."""
    file = Path(path)
    if not file.exists():
        raise InputFileError(path, "no such file")
    if file.is_dir():
        raise InputFileError(path, "is a directory, not a file")
    if not os.access(file, os.R_OK):
        raise InputFileError(path, "cannot be read (permission denied)")
    return file


def _is_csv(path: str) -> bool:
    return Path(path).suffix.lower() not in (".parquet", ".pq")


def _separator(path: str) -> str:
    return "\t" if Path(path).suffix.lower() == ".tsv" else ","


def open_input(path: str, *, truncate_ragged_lines: bool = False) -> pl.LazyFrame:
    """A lazy frame over the input, every column as text, with a 1-based row number column.

    A CSV row with more fields than the header is an error unless `truncate_ragged_lines`, which
    drops the extra fields: only for callers that find those rows another way (`_ragged_rows`).
    """
    file = check_input_file(path)
    suffix = file.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pl.scan_parquet(file)
            frame = frame.select(_as_text(n, t) for n, t in frame.collect_schema().items())
        else:
            if suffix not in (".csv", ".txt", ".tsv", ""):
                raise InputFileError(path, f"unknown format {suffix!r}: use .csv or .parquet")
            _check_encoding(file)
            frame = pl.scan_csv(
                file,
                infer_schema=False,
                separator=_separator(path),
                raise_if_empty=False,
                truncate_ragged_lines=truncate_ragged_lines,
            )
        return frame.with_row_index(_ROW, offset=1)
    except InputFileError:
        raise
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputFileError(path, _polars_problem(exc, path)) from None


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """A Parquet column as text. Lists do not cast to text in polars: they become JSON, so a
    list column the job does not use neither stops the file nor is lost from the failures file."""
    if isinstance(dtype, pl.List | pl.Array):
        wrapped = pl.struct(pl.col(name).alias("v")).struct.json_encode()
        text = wrapped.str.strip_prefix('{"v":').str.strip_suffix("}")
        return pl.when(pl.col(name).is_null()).then(None).otherwise(text).alias(name)
    return pl.col(name).cast(pl.String)


def _polars_problem(exc: BaseException, path: str | None = None) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "utf-8" in text.lower() or "utf8" in text.lower():
        return "is not valid UTF-8; save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    if "parquet" in text.lower() or "magic" in text.lower():
        return f"is not a readable Parquet file ({text})"
    located = _locate_csv_problem(path) if path else None
    return located or f"cannot be parsed ({text})"


def _locate_csv_problem(path: str) -> str | None:
    """Polars says *that* a CSV is malformed; find *where*, with the stdlib's parser (error
    path only, so its speed does not matter)."""
    if not _is_csv(path):
        return None
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True, delimiter=_separator(path))
            header = next(reader, [])
            for number, record in enumerate(reader, start=1):
                if record and len(record) != len(header):
                    return (
                        f"row {number} has {len(record)} fields but the header has "
                        f"{len(header)}; quote values that contain commas"
                    )
    except csv.Error as exc:
        return f"malformed CSV near line {reader.line_num}: {exc} (check the quotes)"
    except (OSError, UnicodeDecodeError):
        return None
    return None


def column_names(path: str, frame: pl.LazyFrame) -> list[str]:
    try:
        return [name for name in frame.collect_schema().names() if name != _ROW]
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputFileError(path, _polars_problem(exc, path)) from None


def read_batches(
    path: str,
    *,
    column_map: ColumnMap = (),
    workflow_id: str | None = None,
    reason: str | None = None,
    actor_id: str | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> tuple[Columns, Iterator[ReadBatch]]:
    """Resolve the columns now (file-level errors raise here), then stream validated batches."""
    default_workflow = None
    if workflow_id is not None:
        default_workflow = normalize_uuid(workflow_id)
        if default_workflow is None:
            raise UsageError(f"--workflow-id {workflow_id!r} is not a valid UUID")
    frame = open_input(path)
    columns = resolve_columns(path, column_names(path, frame), column_map, workflow_id is not None)
    # The streaming query only selects; the per-row work runs eagerly on each batch, so what
    # polars buffers ahead of us is the raw columns and nothing more.
    raw = [c for c in (columns.lead_id, columns.workflow_id, columns.reason, columns.actor_id) if c]
    wanted = [_ROW, *dict.fromkeys(raw)]
    projection = _projection(columns, default_workflow, reason, actor_id)
    return columns, _stream(path, wanted, projection, columns, chunk_size)


def _projection(
    columns: Columns, default_workflow: str | None, reason: str | None, actor_id: str | None
) -> list[pl.Expr]:
    def text_or(column: str | None, default: str | None, alias: str) -> pl.Expr:
        value = pl.col(column).cast(pl.String) if column else pl.lit(None, pl.String)
        value = pl.when(value.str.strip_chars() == "").then(None).otherwise(value)
        return value.fill_null(pl.lit(default, pl.String)).alias(alias)

    workflow_raw = (
        pl.col(columns.workflow_id).cast(pl.String)
        if columns.workflow_id
        else pl.lit(None, pl.String)
    )
    workflow_blank = workflow_raw.is_null() | (workflow_raw.str.strip_chars() == "")
    fallback = pl.lit(default_workflow, pl.String)
    workflow = (
        pl.when(workflow_blank).then(fallback).otherwise(_uuid_expr(columns.workflow_id))
        if columns.workflow_id
        else fallback
    )
    return [
        pl.col(_ROW),
        pl.col(columns.lead_id).cast(pl.String).alias("raw_lead"),
        _uuid_expr(columns.lead_id).alias("lead"),
        workflow_raw.alias("raw_workflow"),
        workflow.alias("workflow"),
        text_or(columns.reason, reason, "reason"),
        text_or(columns.actor_id, actor_id, "actor"),
    ]


def input_chunks(
    path: str, columns: Sequence[str] | None = None, chunk_size: int = CHUNK_SIZE
) -> Iterator[tuple[pl.DataFrame, bool]]:
    """The input in chunks of `columns` (all, if None), each with whether it was read with extra
    fields dropped: a CSV row with more fields than the header (an unquoted comma, most often)
    makes polars refuse the file, so from there on it is read again with them dropped, and the
    caller learns which rows had them from `_ragged_rows`. Files without such rows pay nothing."""

    def chunks(frame: pl.LazyFrame, every_column: bool = False) -> Iterator[pl.DataFrame]:
        frame = frame.select(columns) if columns is not None else frame
        # polars only notices extra fields when it parses a row to its end: a CSV's first pass
        # parses every column (no projection pushdown), then keeps `columns` before buffering.
        # With 100 unused columns: validate time unchanged, peak RSS 213 MB against 174 MB
        # (bench/memory.py --wide-rows); selecting after collect_batches buffered 543 MB.
        flags = pl.QueryOptFlags(projection_pushdown=not every_column)
        return frame.collect_batches(
            chunk_size=chunk_size, maintain_order=True, optimizations=flags
        )

    last_row = 0
    try:
        for chunk in chunks(open_input(path), every_column=_is_csv(path)):
            if chunk.height:
                last_row = chunk.get_column(_ROW)[-1]
            yield chunk, False
        return
    except (pl.exceptions.PolarsError, OSError) as exc:
        if not (_is_csv(path) and "truncate_ragged_lines" in str(exc)):
            raise InputFileError(path, _polars_problem(exc, path)) from None
    try:
        tolerant = open_input(path, truncate_ragged_lines=True).filter(pl.col(_ROW) > last_row)
        for chunk in chunks(tolerant):
            yield chunk, True
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputFileError(path, _polars_problem(exc, path)) from None


def _stream(
    path: str, wanted: list[str], projection: list[pl.Expr], columns: Columns, chunk_size: int
) -> Iterator[ReadBatch]:
    records: Generator[str | None, _Sent, None] | None = None
    try:
        for chunk, truncated in input_chunks(path, wanted, chunk_size):
            chunk = chunk.select(projection)
            rows = _validate(chunk, columns)
            if truncated:
                if records is None:
                    records = _ragged_rows(path, columns)
                    next(records)
                for index, raw_lead in enumerate(chunk.get_column("raw_lead")):
                    number, lead, workflow, reason, actor, _ = rows[index]
                    extra = records.send((number, raw_lead))
                    if extra is not None:
                        rows[index] = (number, lead, workflow, reason, actor, extra)
            yield ReadBatch(rows)
        if records is not None:
            with contextlib.suppress(StopIteration):
                records.send(None)
    finally:
        if records is not None:
            records.close()


_Sent = tuple[int, str | None] | None


def _ragged_rows(path: str, columns: Columns) -> Generator[str | None, _Sent, None]:
    """Walk the file with the stdlib parser alongside polars. Sent (row, lead id as polars read
    it), answer why that row is invalid if it had non-blank fields past the header, else None;
    sent None at the end. Blank extra fields (a trailing comma) are harmless. Should the two
    parsers ever disagree on a row or on the number of rows, the file is refused, not trusted."""
    width = len(columns.names)
    lead_at = columns.names.index(columns.lead_id)
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # polars takes long fields too
    problem: str | None = None
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=_separator(path))
        next(reader, None)
        number = 0

        def unreliable() -> InputFileError:
            return InputFileError(
                path,
                f"row {number} (line {reader.line_num}) cannot be read reliably; "
                "quote values that contain commas, quotes or line breaks",
            )

        try:
            while sent := (yield problem):
                wanted, polars_lead = sent
                record: list[str] = []
                while number < wanted:
                    record = next(reader)
                    number += 1
                seen = record[lead_at] if lead_at < len(record) else ""
                if number != wanted or seen != (polars_lead or ""):
                    raise unreliable()
                extra = [field for field in record[width:] if field.strip()]
                problem = (
                    f"{len(record)} fields where the header has {width} (past it: "
                    f"{_shown(', '.join(extra))}); quote values that contain commas"
                    if extra
                    else None
                )
            for record in reader:  # polars saw no more rows; only blank lines may follow
                number += 1
                if any(field.strip() for field in record):
                    raise unreliable()
        except (csv.Error, StopIteration):
            raise InputFileError(
                path, f"malformed CSV near line {reader.line_num} (check the quotes)"
            ) from None


def _validate(chunk: pl.DataFrame, columns: Columns) -> list[ReadRow]:
    valid = chunk.with_columns(
        pl.col("lead").str.contains(_CANONICAL).fill_null(False).alias("lead_ok"),
        pl.col("workflow").str.contains(_CANONICAL).fill_null(False).alias("workflow_ok"),
    )
    out: list[ReadRow] = []
    for row, raw_lead, lead, raw_wf, workflow, reason, actor, lead_ok, wf_ok in valid.iter_rows():
        error = None
        if not lead_ok:
            error = _bad_id(columns.lead_id, raw_lead)
        elif not wf_ok:
            error = (
                _bad_id(columns.workflow_id, raw_wf)
                if columns.workflow_id and raw_wf is not None and raw_wf.strip()
                else _missing_workflow(columns.workflow_id)
            )
        if error:
            out.append((row, raw_lead, raw_wf, reason, actor, error))
        else:
            out.append((row, lead, workflow, reason, actor, None))
    return out


def _shown(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _bad_id(column: str | None, value: Any) -> str:
    if value is None or not str(value).strip():
        return f"column {column!r}: empty; a UUID is required"
    return f"column {column!r}: {_shown(str(value))} is not a valid UUID"


def _missing_workflow(column: str | None) -> str:
    if column:
        return f"column {column!r}: empty, and no --workflow-id default was given"
    return "no workflow id: the file has no workflow column and no --workflow-id was given"

"""The reader: column matching, id normalisation, per-row errors, file-level errors, formats."""

from __future__ import annotations

import uuid
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_assign.errors import InputFileError, UsageError
from batch_assign.reader import input_chunks, normalize_uuid, read_batches

LEAD = "0b7e5b0c-1d9f-4a7b-8d8a-2f7c3c9e6a21"
WF = "6a1f0c1e-58d1-4a36-9a4e-0f4f2d4d8b11"


def rows_of(path: Path, **kwargs: object) -> list[tuple[object, ...]]:
    _, batches = read_batches(str(path), **kwargs)  # type: ignore[arg-type]
    return [row for batch in batches for row in batch.rows]


def write(tmp_path: Path, text: str, name: str = "in.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (LEAD, LEAD),
        (LEAD.upper(), LEAD),
        (f"  {LEAD}  ", LEAD),
        ("{" + LEAD + "}", LEAD),
        ("{ " + LEAD.upper() + " }", LEAD),
        (LEAD.replace("-", ""), LEAD),
        ("LEAD-42", None),
        (LEAD[:-1], None),
        (LEAD + "0", None),
        ("", None),
        ("g" + LEAD[1:], None),
    ],
)
def test_normalize_uuid(raw: str, expected: str | None) -> None:
    """UUIDs in upper case, padded, braced or bare are accepted in canonical form; others are not."""
    assert expected == normalize_uuid(raw)


@pytest.mark.parametrize(
    "header",
    [
        "lead_id,workflow_id",
        "leadId,workflowId",
        "Lead ID,Workflow",
        "LEAD-ID,workflow",
        "id,workflow",
    ],
)
def test_aliases(tmp_path: Path, header: str) -> None:
    """Common spellings of the columns are recognised, case and separators ignored."""
    path = write(tmp_path, f"{header}\n{LEAD},{WF}\n")
    assert rows_of(path) == [(1, LEAD, WF, None, None, None)]


def test_map_wins_over_aliases_and_defaults_fill_blanks(tmp_path: Path) -> None:
    """--map names a column; defaults fill only the rows that lack a value."""
    path = write(tmp_path, f"id,Contact,wf,why\nx,{LEAD},,\ny,{LEAD.upper()},{WF},own reason\n")
    rows = rows_of(
        path,
        column_map=(("lead_id", "contact"), ("workflow_id", "wf"), ("reason", "why")),
        workflow_id=WF.upper(),
        reason="default reason",
        actor_id="ops",
    )
    assert rows == [
        (1, LEAD, WF, "default reason", "ops", None),
        (2, LEAD, WF, "own reason", "ops", None),
    ]


def test_invalid_rows_name_row_column_and_value(tmp_path: Path) -> None:
    """Bad ids become row-level errors naming the column and value; good rows are untouched."""
    path = write(
        tmp_path,
        f"Lead ID,workflow_id\nLEAD-1,{WF}\n,{WF}\n{LEAD},Q1 Outbound\n{LEAD},\n{LEAD},{WF}\n",
    )
    rows = rows_of(path)
    errors = [(row[0], row[5]) for row in rows]
    assert errors == [
        (1, "column 'Lead ID': 'LEAD-1' is not a valid UUID"),
        (2, "column 'Lead ID': empty; a UUID is required"),
        (3, "column 'workflow_id': 'Q1 Outbound' is not a valid UUID"),
        (4, "column 'workflow_id': empty, and no --workflow-id default was given"),
        (5, None),
    ]


def test_bom_crlf_and_quoted_fields(tmp_path: Path) -> None:
    """UTF-8 with a BOM, CRLF line ends, and quoted fields holding commas and newlines."""
    text = f'\ufefflead_id,workflow_id,reason\r\n{LEAD},{WF},"moved, because\r\nof ""Q1"""\r\n'
    path = write(tmp_path, text)
    assert rows_of(path) == [(1, LEAD, WF, 'moved, because\r\nof "Q1"', None, None)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"name,email\nx,y\n", "no lead id column"),
        (b"lead_id\n" + LEAD.encode() + b"\n", "no workflow column"),
        ("lead_id,workflow_id\ncaf\xe9,x\n".encode("latin-1"), "not valid UTF-8"),
        ("lead_id,workflow_id\n".encode("utf-16"), "UTF-16"),
        (b"", "is empty"),
        (f"lead_id;workflow_id\n{LEAD};{WF}\n".encode(), "looks separated by ';'"),
        (
            f"lead_id,workflow_id,reason\n{LEAD},{WF},x,y\r{LEAD},{WF},z\n".encode(),
            r"row 2 \(line 3\) cannot be read reliably",
        ),
        (f'lead_id,workflow_id\n"{LEAD},{WF}\n'.encode(), "malformed CSV near line 2"),
    ],
    ids=[
        "missing",
        "no-lead-column",
        "no-workflow-column",
        "latin1",
        "utf16",
        "empty",
        "semicolon",
        "parsers-disagree",
        "quote",
    ],
)
def test_file_level_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    """A file that cannot be used is one clear error naming the file, before any row is read."""
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputFileError, match=message) as caught:
        rows_of(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("chunk_size", [1, 3, 10_000])
@pytest.mark.parametrize("suffix", ["csv", "tsv"])
def test_extra_fields_make_only_their_row_invalid(
    tmp_path: Path, suffix: str, chunk_size: int
) -> None:
    """G7: a row with more fields than the header (an unquoted comma) is `invalid`, naming the
    extra values, and the other rows still read, numbered as before. Also when the extra field
    lies past the columns the job uses (email here), when it comes after whole batches were
    read (chunk_size 1 and 3), and behind a quoted line break. Blank extras (a trailing
    separator) and short rows are read as they are."""
    lines = [
        ["lead_id", "workflow_id", "reason", "email"],
        [LEAD, WF, "ok", "a@x"],
        [LEAD, WF, '"quoted, with\nline break"', "b@x"],
        [LEAD, WF, "has", " comma", "c@x"],
        [],
        [LEAD, WF, "trailing", "e@x", ""],
        [LEAD, WF, "short"],
        [LEAD, WF, "two", "extra", "x@y", "z"],
        [LEAD, WF, "last", "h@x"],
    ]
    separator = "\t" if suffix == "tsv" else ","
    text = "\n".join(separator.join(line) for line in lines) + "\n"
    path = write(tmp_path, text, name=f"in.{suffix}")
    ragged = "quote values that contain commas"
    assert rows_of(path, chunk_size=chunk_size) == [
        (1, LEAD, WF, "ok", None, None),
        (2, LEAD, WF, "quoted, with\nline break", None, None),
        (3, LEAD, WF, "has", None, f"5 fields where the header has 4 (past it: 'c@x'); {ragged}"),
        (4, None, None, None, None, "column 'lead_id': empty; a UUID is required"),
        (5, LEAD, WF, "trailing", None, None),
        (6, LEAD, WF, "short", None, None),
        (
            7,
            LEAD,
            WF,
            "two",
            None,
            f"6 fields where the header has 4 (past it: 'x@y, z'); {ragged}",
        ),
        (8, LEAD, WF, "last", None, None),
    ]


def test_unknown_map_column_and_bad_default(tmp_path: Path) -> None:
    """--map to a missing column and a malformed --workflow-id are usage errors."""
    path = write(tmp_path, f"lead_id,workflow_id\n{LEAD},{WF}\n")
    with pytest.raises(InputFileError, match="--map lead_id=nope: no such column"):
        rows_of(path, column_map=(("lead_id", "nope"),))
    with pytest.raises(UsageError, match="--workflow-id 'x' is not a valid UUID"):
        rows_of(path, workflow_id="x")


def test_parquet_input(tmp_path: Path) -> None:
    """Parquet files read the same as CSV."""
    path = tmp_path / "in.parquet"
    pl.DataFrame(
        {"leadId": [LEAD, "bad"], "workflowId": [WF, WF], "reason": ["r", None]}
    ).write_parquet(path)
    rows = rows_of(path)
    assert rows[0] == (1, LEAD, WF, "r", None, None)
    assert "not a valid UUID" in str(rows[1][5])


def test_parquet_with_list_columns(tmp_path: Path) -> None:
    """A list column (an export's tags, say) does not stop the file: the job's columns read as
    usual, and `input_chunks`, which the failures file uses, gives the lists as JSON text."""
    path = tmp_path / "in.parquet"
    pl.DataFrame(
        {
            "lead_id": [LEAD, LEAD],
            "workflow_id": [WF, WF],
            "tags": [["a", "b"], None],
            "n": [[1], []],
        }
    ).write_parquet(path)
    assert rows_of(path) == [(1, LEAD, WF, None, None, None), (2, LEAD, WF, None, None, None)]
    (chunk, truncated), *rest = input_chunks(str(path))
    assert (False, []) == (truncated, rest)
    assert chunk.get_column("tags").to_list() == ['["a","b"]', None]
    assert chunk.get_column("n").to_list() == ["[1]", "[]"]


def test_a_long_field_in_a_row_with_extra_fields(tmp_path: Path) -> None:
    """The stdlib parser that finds the extra fields takes a field as long as polars does."""
    long = "x" * 200_000
    path = write(tmp_path, f"lead_id,workflow_id,reason\n{LEAD},{WF},{long},extra\n")
    [(row, *_, error)] = rows_of(path)
    assert (1, "4 fields where the header has 3 (past it: 'extra')") == (row, str(error)[:50])


def test_streams_in_batches(tmp_path: Path) -> None:
    """Large files arrive in several batches with continuous row numbers."""
    lines = "\n".join(f"{uuid.uuid4()},{WF}" for _ in range(2_500))
    path = write(tmp_path, f"lead_id,workflow_id\n{lines}\n")
    _, batches = read_batches(str(path), chunk_size=1_000)
    sizes = [len(batch.rows) for batch in batches]
    assert len(sizes) >= 3
    assert sum(sizes) == 2_500


@settings(max_examples=40, deadline=None)
@given(
    reasons=st.lists(
        st.text(
            alphabet=st.characters(
                exclude_categories=("Cs", "Cc"), include_characters="\n\r\t ,\"'"
            ),
            max_size=30,
        ),
        min_size=1,
        max_size=20,
    )
)
def test_round_trip_reasons(tmp_path_factory: pytest.TempPathFactory, reasons: list[str]) -> None:
    """Whatever text a reason holds (quotes, commas, newlines, unicode), it arrives intact."""
    path = tmp_path_factory.mktemp("rt") / "in.csv"
    pl.DataFrame(
        {"lead_id": [LEAD] * len(reasons), "workflow_id": [WF] * len(reasons), "reason": reasons}
    ).write_csv(path)
    got = [row[3] for row in rows_of(path)]
    assert [r if r.strip() else None for r in reasons] == got

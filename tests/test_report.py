"""The report as the journal holds it: every column's value and type, in each format."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import read_report

from batch_assign.journal import Journal
from batch_assign.reader import ReadBatch
from batch_assign.records import MovementType, Outcome, Status
from batch_assign.report import REPORT_SCHEMA, write_report

LEAD = "0b7c2a9e-54a4-4c4e-9a51-1a7c3b0f3a1{}"
WORKFLOW = "6a1f0c1e-58d1-4a36-9a4e-0f4f2d4d8b11"


def journal_with_outcomes(path: Path) -> Journal:
    journal = Journal(path)
    rows = [(i, LEAD.format(i), WORKFLOW, "moved", None, None) for i in range(1, 5)]
    rows.append((5, "not-a-lead", WORKFLOW, None, None, "lead_id: not a UUID"))
    journal.ingest(
        [ReadBatch(rows)], input_sha256="x", input_name="in.csv", options={}, duplicates="first"
    )
    outcome = Outcome(1, Status.SUCCEEDED, MovementType.ENROLLMENT, "run-1", "Alpha", True)
    journal.apply(
        [(1, "", None), (2, "", None), (3, "", None), (4, "run-0", "wf-old")],
        [
            outcome,
            Outcome(2, Status.SUCCEEDED, MovementType.REASSIGNMENT, "run-2", "Alpha", False),
            Outcome(3, Status.FAILED, http_status=404, error="HTTP 404: lead not found"),
        ],  # row 4: an intent and no answer, in doubt
    )
    return journal


def test_every_status_and_paused_value_reaches_the_csv_report(tmp_path: Path) -> None:
    journal = journal_with_outcomes(tmp_path / "j.sqlite")
    write_report(journal, tmp_path / "out.csv")
    report = read_report(tmp_path / "out.csv")
    assert ["1", "2", "3", "4", "5"] == [r["row"] for r in report]
    assert ["succeeded", "succeeded", "failed", "uncertain", "invalid"] == [
        r["status"] for r in report
    ]
    assert ["true", "false", "", "", ""] == [r["paused"] for r in report]
    assert ("enrollment", "run-1", "Alpha") == tuple(
        report[0][k] for k in ("movement_type", "workflow_run_id", "workflow_name")
    )
    assert ("404", "HTTP 404: lead not found") == (report[2]["http_status"], report[2]["error"])
    assert "run the same command again to verify it" in report[3]["error"]
    assert "lead_id: not a UUID" == report[4]["error"]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_typed_formats_keep_the_report_schema(tmp_path: Path, suffix: str) -> None:
    journal = journal_with_outcomes(tmp_path / "j.sqlite")
    write_report(journal, tmp_path / f"out{suffix}")
    if suffix == ".parquet":
        frame = pl.read_parquet(tmp_path / "out.parquet")
        assert REPORT_SCHEMA == dict(frame.schema)
        paused = frame.get_column("paused").to_list()
    else:
        lines = (tmp_path / "out.jsonl").read_text().splitlines()
        paused = [json.loads(line)["paused"] for line in lines]
    assert [True, False, None, None, None] == paused

"""The journal's commits: one statement over a JSON array where SQLite has it, `executemany`
where it does not, with the same rows written either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batch_assign.journal import Journal
from batch_assign.records import MovementType, Outcome, Status

OUTCOMES = [
    Outcome(
        4,
        Status.SUCCEEDED,
        movement_type=MovementType.ENROLLMENT,
        workflow_run_id="run-4",
        workflow_name='Nurture "Q1", ünïcode',
        paused=False,
        http_status=201,
        attempts=2,
        duration_ms=12,
    ),
    Outcome(5, Status.FAILED, http_status=404, error="HTTP 404: not_found\nline 2", attempts=1),
    Outcome(6, Status.PENDING, http_status=401),  # refused: back to pending, no intent
    Outcome(7, Status.SUCCEEDED, paused=True, previous_workflow_id="wf-before", attempts=1),
    Outcome(8, Status.UNCERTAIN, error="no answer", attempts=3, duration_ms=30_000),
]
INTENTS = [(1, "run-before", "wf-before"), (2, None, None), (3, "", None), (6, None, None)]


def journal_after_commits(path: Path, bulk: bool) -> list[dict[str, Any]]:
    journal = Journal(path)
    assert journal._bulk  # this machine's SQLite has UPDATE ... FROM and JSON
    journal._bulk = bulk
    journal._db.executemany(
        "INSERT INTO rows (row, lead_id, workflow_id, status, attempts, previous_workflow_id)"
        " VALUES (?, ?, 'wf', 'pending', 1, ?)",
        [(row, f"lead-{row}", "wf-old" if row % 2 else None) for row in range(1, 10)],
    )
    journal.apply(INTENTS, OUTCOMES)
    journal.apply([], [Outcome(9, Status.SUCCEEDED, attempts=1)])
    cursor = journal._db.execute("SELECT * FROM rows ORDER BY row")
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    journal.close()
    for row in rows:
        del row["completed_at"]  # a timestamp
    return rows


@pytest.mark.parametrize("bulk", [True, False])
def test_intents_and_outcomes_are_written_as_given(tmp_path: Path, bulk: bool) -> None:
    rows = {row["row"]: row for row in journal_after_commits(tmp_path / "j.sqlite", bulk)}
    columns = ("status", "phase", "prior_run_id", "previous_workflow_id", "attempts", "error")

    def picked(row: int) -> tuple[Any, ...]:
        return tuple(rows[row][name] for name in columns)

    assert picked(1) == ("pending", "sending", "run-before", "wf-before", 1, None)
    assert picked(2) == ("pending", "sending", None, None, 1, None)
    assert picked(3) == ("pending", "sending", "", None, 1, None)
    assert picked(4)[:2] == ("succeeded", "")
    assert rows[4]["workflow_name"] == 'Nurture "Q1", ünïcode'
    assert (rows[4]["paused"], rows[4]["http_status"], rows[4]["duration_ms"]) == (0, 201, 12)
    assert picked(5) == ("failed", "", None, "wf-old", 2, "HTTP 404: not_found\nline 2")
    assert picked(6) == ("pending", "", None, None, 1, None)  # the outcome came after the intent
    assert picked(7) == ("succeeded", "", None, "wf-before", 2, None)
    assert rows[7]["paused"] == 1
    assert picked(8) == ("uncertain", "", None, None, 4, "no answer")
    assert picked(9)[:2] == ("succeeded", "")


def test_both_ways_write_the_same_rows(tmp_path: Path) -> None:
    assert journal_after_commits(tmp_path / "bulk.sqlite", True) == journal_after_commits(
        tmp_path / "each.sqlite", False
    )

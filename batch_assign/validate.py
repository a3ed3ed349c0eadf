"""`batch-assign validate`: read and check a whole input file without sending anything."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from batch_assign.config import ColumnMap
from batch_assign.journal import Journal, fingerprint_file
from batch_assign.reader import read_batches

__all__ = ["ValidationResult", "validate_file"]

_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class ValidationResult:
    path: str
    rows: int
    valid: int
    invalid: int
    duplicates: int
    examples: list[tuple[int, str, str]]  # (row, status, error)

    @property
    def exit_code(self) -> int:
        return 0 if self.invalid == 0 and self.duplicates == 0 else 1

    def render(self) -> str:
        lines = [
            f"{self.path}: {self.rows:,} rows: {self.valid:,} ready to send, "
            f"{self.invalid:,} invalid, {self.duplicates:,} duplicate",
        ]
        for row, status, error in self.examples:
            lines.append(f"  {self.path} row {row}: {status}: {error}")
        return "\n".join(lines)


def validate_file(
    path: str,
    *,
    workflow_id: str | None = None,
    column_map: ColumnMap = (),
    duplicates: str = "first",
) -> ValidationResult:
    """Run the reader and the duplicate check into a scratch journal; report what it found."""
    _, batches = read_batches(path, column_map=column_map, workflow_id=workflow_id)
    with tempfile.TemporaryDirectory(prefix="batch-assign-validate-") as scratch:
        journal = Journal(Path(scratch) / "validate.sqlite")
        try:
            rows = journal.ingest(
                batches,
                input_sha256=fingerprint_file(path),
                input_name=path,
                options={},
                duplicates=duplicates,
            )
            statuses, _ = journal.counts()
            examples = journal.examples(("invalid", "duplicate"), _EXAMPLES)
        finally:
            journal.close()
    invalid = statuses.get("invalid", 0)
    dupes = statuses.get("duplicate", 0)
    return ValidationResult(path, rows, rows - invalid - dupes, invalid, dupes, examples)

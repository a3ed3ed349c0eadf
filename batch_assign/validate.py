"""`batch-assign validate`: read and check a whole input file without sending anything.

With `--preflight` it also asks the API (`GET /workflows`, paced like any request) whether every
target workflow exists, and warns about paused ones, whose cadences would not start.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio

from batch_assign.client import NexorClient
from batch_assign.config import ColumnMap
from batch_assign.journal import Journal, fingerprint_file
from batch_assign.limiter import RateLimiter
from batch_assign.reader import read_batches

__all__ = ["ValidationResult", "check_workflows", "validate_file"]

_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """What `validate` found; `render()` is what it prints."""

    path: str
    rows: int
    valid: int
    invalid: int
    duplicates: int
    examples: list[tuple[int, str, str]]  # (row, status, error)
    targets: dict[str, int] = field(default_factory=dict)  # workflow id -> rows
    missing_workflows: list[tuple[str, int]] = field(default_factory=list)
    paused_workflows: list[tuple[str, str, int]] = field(default_factory=list)
    checked: bool = False

    @property
    def exit_code(self) -> int:
        problems = self.invalid or self.duplicates or self.missing_workflows
        return 1 if problems else 0

    def render(self) -> str:
        lines = [
            f"{self.path}: {self.rows:,} rows: {self.valid:,} ready to send, "
            f"{self.invalid:,} invalid, {self.duplicates:,} duplicate; "
            f"{len(self.targets):,} target workflow(s)",
        ]
        lines += [
            f"  {self.path} row {row}: {status}: {error}" for row, status, error in self.examples
        ]
        if self.checked:
            for workflow, rows in self.missing_workflows:
                lines.append(
                    f"  workflow {workflow} ({rows:,} rows): does not exist in this account"
                )
            for workflow, name, rows in self.paused_workflows:
                lines.append(
                    f"  warning: workflow {workflow} ({name!r}, {rows:,} rows) is paused: "
                    "its cadences will not start until it is resumed"
                )
            if not self.missing_workflows:
                lines.append("  preflight: every target workflow exists")
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
            targets = journal.targets()
        finally:
            journal.close()
    invalid = statuses.get("invalid", 0)
    dupes = statuses.get("duplicate", 0)
    return ValidationResult(
        path, rows, rows - invalid - dupes, invalid, dupes, examples, targets=targets
    )


def check_workflows(result: ValidationResult, base_url: str, api_key: str) -> ValidationResult:
    """Add which target workflows are missing or paused, from the API's workflow list."""

    async def fetch() -> list[dict[str, object]]:
        async with NexorClient(base_url, api_key, limiter=RateLimiter(5, 1)) as client:
            return await client.list_workflows()

    known = {str(w.get("id", "")).lower(): w for w in anyio.run(fetch)}
    missing = [(wf, n) for wf, n in result.targets.items() if wf not in known]
    paused = [
        (wf, str(known[wf].get("name", "")), n)
        for wf, n in result.targets.items()
        if wf in known and known[wf].get("paused") is True
    ]
    return replace(result, missing_workflows=missing, paused_workflows=paused, checked=True)

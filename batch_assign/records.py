"""Typed records that cross stage boundaries: `Row` in, `Outcome` out, `RunSummary` at the end."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "FAILURE_STATUSES",
    "FINAL_STATUSES",
    "LeadState",
    "MovementType",
    "Outcome",
    "RequestClass",
    "Row",
    "RunSummary",
    "Shard",
    "Status",
]


class Status(enum.StrEnum):
    """A row's status in the report (DESIGN section 4, plus the dry-run verdicts)."""

    SUCCEEDED = "succeeded"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    UNCERTAIN = "uncertain"
    PENDING = "pending"
    WOULD_ENROLL = "would_enroll"
    WOULD_REASSIGN = "would_reassign"


FINAL_STATUSES = frozenset(Status) - {Status.PENDING}
FAILURE_STATUSES = frozenset({Status.FAILED, Status.INVALID, Status.UNCERTAIN})


class MovementType(enum.StrEnum):
    """What the API did to the lead's workflow run."""

    ENROLLMENT = "enrollment"
    REASSIGNMENT = "reassignment"


class RequestClass(enum.StrEnum):
    """DESIGN section 3: what a response or transport error means for the row."""

    SUCCESS = "success"
    PERMANENT = "permanent"
    FATAL = "fatal"
    NOT_APPLIED = "not_applied"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True, slots=True)
class Row:
    """One validated input row, ready to send. `row` is the 1-based data row number."""

    row: int
    lead_id: str
    workflow_id: str
    reason: str | None = None
    actor_id: str | None = None


@dataclass(frozen=True, slots=True)
class LeadState:
    """What `GET /leads/{id}` says: the lead's active runs as (run id, workflow id, workflow name)."""

    lead_id: str
    active_runs: tuple[tuple[str, str, str | None], ...] = ()

    @property
    def workflow_ids(self) -> frozenset[str]:
        return frozenset(workflow_id for _, workflow_id, _ in self.active_runs)

    @property
    def current_workflow_id(self) -> str | None:
        return self.active_runs[0][1] if self.active_runs else None

    @property
    def current_run_id(self) -> str | None:
        return self.active_runs[0][0] if self.active_runs else None

    def run_in(self, workflow_id: str) -> tuple[str, str, str | None] | None:
        """The active run in `workflow_id`, if the lead has one."""
        return next((run for run in self.active_runs if run[1] == workflow_id), None)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final word on one row, as the journal stores it and the report shows it."""

    row: int
    status: Status
    movement_type: MovementType | None = None
    workflow_run_id: str | None = None
    workflow_name: str | None = None
    paused: bool | None = None
    previous_workflow_id: str | None = None
    http_status: int | None = None
    error: str | None = None
    attempts: int = 0
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Shard:
    """`--shard K/N`: this run owns the rows whose lead id hashes to K (0-based) of N."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Counts for the end of a run: printed as a table and written as `.summary.json`."""

    rows: int
    statuses: dict[str, int]
    movement_types: dict[str, int]
    requests: int
    retries: int
    rate_limited: int
    duration_s: float
    achieved_rate: float
    exit_code: int
    stop_reason: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

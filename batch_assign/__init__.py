"""batch-assign: move leads between Nexor workflows in bulk, exactly once, at a chosen rate."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from batch_assign.config import RunConfig
from batch_assign.errors import (
    AmbiguousError,
    BatchAssignError,
    FatalAuthError,
    InputFileError,
    JournalMismatchError,
    LockedError,
    NotAppliedError,
    PermanentError,
    RequestError,
    UsageError,
)
from batch_assign.job import run_job
from batch_assign.records import MovementType, Outcome, RequestClass, Row, RunSummary, Status

try:
    __version__ = version("batch-assign")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "AmbiguousError",
    "BatchAssignError",
    "FatalAuthError",
    "InputFileError",
    "JournalMismatchError",
    "LockedError",
    "MovementType",
    "NotAppliedError",
    "Outcome",
    "PermanentError",
    "RequestClass",
    "RequestError",
    "Row",
    "RunConfig",
    "RunSummary",
    "Status",
    "UsageError",
    "__version__",
    "run_job",
]

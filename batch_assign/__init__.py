"""batch-assign: move leads between Nexor workflows in bulk, exactly once, at a chosen rate."""

from __future__ import annotations

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


def __getattr__(name: str) -> str:
    """`__version__`, read from the installed metadata only when asked: importing
    importlib.metadata costs every run ~40 ms of start-up."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("batch-assign")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0"


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

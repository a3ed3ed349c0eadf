"""batch-assign: move leads between Nexor workflows in bulk, exactly once, at a chosen rate.

`RunConfig` and `run_job` are imported on first use (PEP 562): importing the package, as the
command's entry point does first, does not pull in polars, aiohttp and httpx before it asks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
from batch_assign.records import MovementType, Outcome, RequestClass, Row, RunSummary, Status

if TYPE_CHECKING:
    from batch_assign.config import RunConfig
    from batch_assign.job import run_job

_LAZY = {"RunConfig": "config", "run_job": "job"}  # these two pull in every dependency


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def _version() -> str:
    """Read from the installed metadata only when asked: importing importlib.metadata costs
    every run ~40 ms of start-up."""
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

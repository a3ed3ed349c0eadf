"""The one exception tree of batch-assign; each branch is named for what happens next.

    BatchAssignError
    ├── UsageError            bad flags, job file or environment: exit 2, nothing sent
    │   └── InputFileError    the input file as a whole is unusable: exit 2, nothing sent
    ├── JournalMismatchError  the journal belongs to another input or options: exit 2
    ├── LockedError           another run holds this report's lock: exit 2
    └── RequestError          one request's fate (carries lead_id and http_status, never the key)
        ├── FatalAuthError    401/403: the whole run stops, exit 3
        ├── PermanentError    400/404/409/422: the row fails, no retry
        ├── NotAppliedError   429/503/connect errors: safe to retry
        └── AmbiguousError    500/502/504/read timeout/lost connection: verify before anything else

Row-level input problems are `invalid` outcomes, not exceptions.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousError",
    "BatchAssignError",
    "FatalAuthError",
    "InputFileError",
    "JournalMismatchError",
    "LockedError",
    "NotAppliedError",
    "PermanentError",
    "RequestError",
    "UsageError",
]


class BatchAssignError(Exception):
    """Root of every error batch-assign raises on purpose."""

    exit_code: int = 2


class UsageError(BatchAssignError):
    """A flag, job file or environment setting is wrong; raised before anything is sent."""


class InputFileError(UsageError):
    """The input file cannot be used at all (missing, unreadable, no lead column, bad encoding)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class JournalMismatchError(BatchAssignError):
    """A journal exists for this report but was made for another input file or other options."""


class LockedError(BatchAssignError):
    """Another live process is running the same job (same report path)."""


class RequestError(BatchAssignError):
    """One HTTP request's failure, classified per DESIGN section 3."""

    def __init__(
        self,
        message: str,
        *,
        lead_id: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.lead_id = lead_id
        self.http_status = http_status
        self.retry_after = retry_after


class FatalAuthError(RequestError):
    """The API refused the key (401/403): no further request can succeed, so the run stops."""

    exit_code = 3


class PermanentError(RequestError):
    """The API rejected this row for good (400/404/409/422): retrying cannot help."""


class NotAppliedError(RequestError):
    """The request certainly did not take effect (429, 503, connect errors): retry it."""


class AmbiguousError(RequestError):
    """The request may have been applied but no answer says so: verify with a GET, never resend."""

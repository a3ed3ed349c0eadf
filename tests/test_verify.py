"""G3 as a table: what the lead's state after a lost answer says about the assignment.

A unit test of one decision (`Dispatcher._verify`) with a stub client in place of HTTP; the
end-to-end proofs over the sandbox are in test_job.py and test_resume.py.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from batch_assign.dispatch import NO_ACTIVE_RUN, Dispatcher, DispatchSettings
from batch_assign.errors import NotAppliedError
from batch_assign.journal import JournalRow
from batch_assign.records import LeadState

TARGET, OTHER, THIRD = "wf-target", "wf-other", "wf-third"


class StubClient:
    """Answers GET /leads/{id} with a fixed state (or fails every time)."""

    def __init__(self, state: LeadState | None) -> None:
        self.state = state
        self.requests = 0
        self.rate_limited = 0

    async def get_lead(self, lead_id: str) -> LeadState:
        self.requests += 1
        if self.state is None:
            raise NotAppliedError("HTTP 503: down", http_status=503)
        return self.state


def row() -> JournalRow:
    return JournalRow(1, "lead", TARGET, None, None, True, None, None)


@pytest.mark.parametrize(
    ("prior_run", "runs", "verdict"),
    [
        ("run-a", (("run-new", TARGET, "T"),), "applied"),  # moved to the target: it worked
        ("run-a", (("run-a", OTHER, "O"),), "untouched"),  # still on its old run: safe to resend
        (NO_ACTIVE_RUN, (), "untouched"),  # had none, has none
        (NO_ACTIVE_RUN, (("run-new", TARGET, "T"),), "applied"),  # enrolled
        ("run-a", (("run-b", THIRD, "X"),), "unknown"),  # someone else moved it
        ("run-a", (("run-b", OTHER, "O"),), "unknown"),  # same workflow, new run: not ours
        ("run-a", (), "unknown"),  # deactivated by someone else
        (None, (("run-new", TARGET, "T"),), "applied"),  # --no-check-current: in target
        (None, (("run-b", OTHER, "O"),), "untouched"),  # --no-check-current: not in target
    ],
    ids=[
        "moved",
        "untouched",
        "none-none",
        "enrolled",
        "third",
        "other-new-run",
        "gone",
        "unchecked-in",
        "unchecked-out",
    ],
)
def test_verdicts(prior_run: str | None, runs: Any, verdict: str) -> None:
    """Applied only when the target run is new; untouched only when nothing changed."""

    async def go() -> str:
        client = StubClient(LeadState("lead", runs))
        dispatcher = Dispatcher(None, client, DispatchSettings(max_attempts=2))  # type: ignore[arg-type]
        found, _ = await dispatcher._verify(row(), prior_run)
        return found.value

    assert verdict == anyio.run(go)


def test_unreadable_lead_is_unknown() -> None:
    """If the lead cannot be read back, the fate stays unknown: never resend on a guess."""

    async def no_wait(_: float) -> None:
        await anyio.lowlevel.checkpoint()

    async def go() -> str:
        dispatcher = Dispatcher(
            None, StubClient(None), DispatchSettings(max_attempts=2), sleep=no_wait
        )  # type: ignore[arg-type]
        found, state = await dispatcher._verify(row(), "run-a")
        assert state is None
        return found.value

    assert "unknown" == anyio.run(go)

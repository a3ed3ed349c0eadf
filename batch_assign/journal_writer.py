"""Group commit for the journal: intents wait for the commit that holds them, outcomes ride along.

A worker calls `await writer.intent(...)` before its POST and only sends once that intent is on
disk (G5). One task, `run()`, commits whatever accumulated, in a worker thread, then wakes every
intent that commit covered, so the cost of a commit (an fsync) is shared by all rows in it.
The session's counters ride along at most once a second (with each commit they cost a third of
the commit's CPU); the session's end writes the final ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from batch_assign.journal import Journal
from batch_assign.records import Outcome

__all__ = ["JournalWriter"]

_COUNTERS_EVERY_S = 1.0


class JournalWriter:
    """Group commit: intents wait for the commit that holds them; outcomes ride along."""

    def __init__(self, journal: Journal, counters: Callable[[], dict[str, int]]) -> None:
        self._journal = journal
        self._counters = counters
        self._intents: list[tuple[int, str | None, str | None]] = []
        self._outcomes: list[Outcome] = []
        self._wake = anyio.Event()
        self._next_commit = anyio.Event()
        self._closing = False
        self._counters_saved = -_COUNTERS_EVERY_S

    async def intent(self, row: int, prior_run_id: str | None, previous: str | None) -> None:
        await self.intents([(row, prior_run_id, previous)])

    async def intents(self, intents: list[tuple[int, str | None, str | None]]) -> None:
        """Return once `(row, prior_run_id, previous_workflow_id)` intents are committed."""
        self._intents.extend(intents)
        committed = self._next_commit
        self._wake.set()
        await committed.wait()

    def outcome(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        if len(self._outcomes) >= 256:
            self._wake.set()

    def close(self) -> None:
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        while True:
            with anyio.move_on_after(0.2):
                await self._wake.wait()
            self._wake = anyio.Event()
            intents, outcomes, committed = self._intents, self._outcomes, self._next_commit
            self._intents, self._outcomes, self._next_commit = [], [], anyio.Event()
            if intents or outcomes:
                counters = None
                now = time.monotonic()
                if self._closing or now - self._counters_saved >= _COUNTERS_EVERY_S:
                    counters, self._counters_saved = self._counters(), now
                await anyio.to_thread.run_sync(self._journal.apply, intents, outcomes, counters)
            committed.set()
            if self._closing and not self._intents and not self._outcomes:
                return

"""The journal writer's group commit, with a stand-in journal that records each commit (the real
journal's commits are covered through the sandbox runs)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from batch_assign import journal_writer
from batch_assign.journal_writer import JournalWriter
from batch_assign.records import Outcome, Status

pytestmark = pytest.mark.anyio


class RecordingJournal:
    def __init__(self) -> None:
        self.commits: list[tuple[list[Any], list[Outcome], dict[str, int] | None]] = []

    def apply(
        self, intents: list[Any], outcomes: list[Outcome], counters: dict[str, int] | None
    ) -> None:
        self.commits.append((list(intents), list(outcomes), counters))


async def test_counters_ride_along_at_most_once_a_second_and_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counters cost a third of a commit's CPU: saved with the first commit, then only with a
    commit a second or more later, and always with the last one."""
    now = [100.0]
    monkeypatch.setattr(journal_writer.time, "monotonic", lambda: now[0])
    journal = RecordingJournal()
    writer = JournalWriter(journal, lambda: {"requests": len(journal.commits)})  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        for step in range(6):  # a commit every 0.4 s of the fake clock
            await writer.intent(step, None, None)
            now[0] += 0.4
        writer.outcome(Outcome(0, Status.SUCCEEDED))
        writer.close()
    saved = [counters for _, _, counters in journal.commits]
    assert len(journal.commits) == 7
    # t = 100.0, 100.4, 100.8, 101.2, 101.6, 102.0, 102.4 (close)
    assert [c is not None for c in saved] == [True, False, False, True, False, False, True]
    assert [row for intents, _, _ in journal.commits for row, *_ in intents] == list(range(6))
    assert [o.row for _, outcomes, _ in journal.commits for o in outcomes] == [0]


async def test_an_intent_returns_only_after_the_commit_that_holds_it() -> None:
    """G5: a worker may send only once its intent is on disk; intents that arrive together share
    one commit."""
    journal = RecordingJournal()
    writer = JournalWriter(journal, dict)  # type: ignore[arg-type]
    seen: list[int] = []

    async def worker(row: int) -> None:
        await writer.intent(row, None, None)
        seen.append(len([1 for intents, _, _ in journal.commits for r, *_ in intents if r == row]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        async with anyio.create_task_group() as workers:
            for row in range(5):
                workers.start_soon(worker, row)
        writer.close()
    assert seen == [1] * 5
    assert len(journal.commits) <= 2  # the five went in one commit (plus the closing one)

"""The dispatcher's row feed: every pending row handed out once, in input order, page by page;
with intents recorded ahead, no fresh row handed out before the commit that holds its intent."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from batch_assign.dispatch import _RowFeed
from batch_assign.journal import JournalRow
from batch_assign.journal_writer import JournalWriter
from batch_assign.records import Outcome

pytestmark = pytest.mark.anyio


class PagedRows:
    """Stands in for the journal: `todo` pages rows 1..n (those in `in_doubt` were sent by an
    earlier session), `apply` records each commit."""

    def __init__(self, n: int, in_doubt: frozenset[int] = frozenset()) -> None:
        self.rows = [
            JournalRow(i, f"lead-{i}", "wf", None, None, i in in_doubt, None, None)
            for i in range(1, n + 1)
        ]
        self.calls: list[tuple[int, int]] = []
        self.committed: set[int] = set()  # rows whose intent is on "disk"
        self.commits: list[list[int]] = []

    def todo(self, after_row: int, limit: int) -> list[JournalRow]:
        self.calls.append((after_row, limit))
        return [row for row in self.rows if row.row > after_row][:limit]

    def apply(self, intents: list[Any], outcomes: list[Outcome], counters: Any = None) -> None:
        self.commits.append([row for row, *_ in intents])
        self.committed.update(row for row, *_ in intents)


async def take_all(feed: _RowFeed, workers: int, on_row: Any = None) -> list[int]:
    taken: list[int] = []

    async def worker() -> None:
        while (row := await feed.next()) is not None:
            taken.append(row.row)
            if on_row is not None:
                on_row(row)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.run)
        for _ in range(workers):
            tg.start_soon(worker)
    return taken


async def test_workers_share_every_row_once_in_order() -> None:
    journal = PagedRows(25)
    feed = _RowFeed(journal, page_size=10)  # type: ignore[arg-type]
    with anyio.fail_after(5):
        taken = await take_all(feed, 8)
    assert taken == list(range(1, 26))
    # one read per page, each after the last row handed out, and one that finds nothing left
    assert journal.calls == [(0, 10), (10, 10), (20, 10), (25, 10)]
    assert [] == feed.unsent()


async def test_an_empty_journal_ends_every_worker() -> None:
    feed = _RowFeed(PagedRows(0), page_size=10)  # type: ignore[arg-type]
    with anyio.fail_after(5):
        assert [] == await take_all(feed, 3)
        assert await feed.next() is None


async def test_intents_ahead_are_committed_before_their_row_is_handed_out() -> None:
    """G5 with intents recorded by the feed: a worker gets a fresh row only once its intent is
    committed, `ahead` rows share a commit, and a row sent by an earlier session (in doubt)
    keeps the intent it has (its prior run) rather than getting a blank one."""
    journal = PagedRows(50, in_doubt=frozenset({3, 4}))
    writer = JournalWriter(journal, dict)  # type: ignore[arg-type]
    feed = _RowFeed(journal, writer, ahead=8, page_size=20)  # type: ignore[arg-type]
    early: list[int] = []

    def check(row: JournalRow) -> None:
        if not row.in_doubt and row.row not in journal.committed:
            early.append(row.row)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            taken = await take_all(feed, 4, check)
            writer.close()
    assert taken == list(range(1, 51))
    assert [] == early
    intents = [row for commit in journal.commits for row in commit]
    assert sorted(intents) == [row for row in range(1, 51) if row not in (3, 4)]
    assert all(len(commit) <= 8 for commit in journal.commits)
    assert len([c for c in journal.commits if c]) <= 8  # 48 intents, 8 at a time (pages: 20)
    assert [] == feed.unsent()


async def test_rows_with_an_intent_that_no_worker_sent_come_back_from_unsent() -> None:
    """A stop: the rows the feed committed ahead but never handed out, and a row a worker took
    but gave back, are `unsent()` (the dispatcher returns them to pending); the rows handed out
    are not, nor is a row in doubt."""
    journal = PagedRows(40, in_doubt=frozenset({6}))
    writer = JournalWriter(journal, dict)  # type: ignore[arg-type]
    feed = _RowFeed(journal, writer, ahead=8)  # type: ignore[arg-type]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            feed_scope = anyio.CancelScope()
            tg.start_soon(_run_in, feed, feed_scope)
            handed = [await feed.next() for _ in range(6)]
            assert all(row is not None for row in handed)
            feed.give_back(handed[-1])  # type: ignore[arg-type]  # row 6, in doubt
            feed.give_back(handed[-2])  # type: ignore[arg-type]  # row 5: taken, not sent
            await anyio.sleep(0.05)  # the feed tops up while the "workers" are busy
            feed_scope.cancel()
            writer.close()
    committed = {row for commit in journal.commits for row in commit}
    unsent = feed.unsent()
    assert [5] == [row for row in unsent if row <= 6]
    assert unsent == sorted(committed - {1, 2, 3, 4})
    assert len(unsent) >= 8  # a refill's worth was ready


async def _run_in(feed: _RowFeed, scope: anyio.CancelScope) -> None:
    with scope:
        await feed.run()

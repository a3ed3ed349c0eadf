"""The dispatcher's row feed: every pending row handed out once, in input order, page by page."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from batch_assign.dispatch import _RowFeed
from batch_assign.journal import JournalRow

pytestmark = pytest.mark.anyio


class PagedRows:
    """Stands in for the journal's `todo` (the one method the feed uses): rows 1..n, paged."""

    def __init__(self, n: int) -> None:
        self.rows = [
            JournalRow(i, f"lead-{i}", "wf", None, None, False, None, None) for i in range(1, n + 1)
        ]
        self.calls: list[tuple[int, int]] = []

    def todo(self, after_row: int, limit: int) -> list[JournalRow]:
        self.calls.append((after_row, limit))
        return [row for row in self.rows if row.row > after_row][:limit]


async def test_workers_share_every_row_once_in_order() -> None:
    journal = PagedRows(25)
    feed = _RowFeed(journal, page_size=10)  # type: ignore[arg-type]
    taken: list[int] = []

    async def worker() -> None:
        while (row := await feed.next()) is not None:
            taken.append(row.row)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(worker)
    assert taken == list(range(1, 26))
    # one read per page, each after the last row handed out, and one that finds nothing left
    assert journal.calls == [(0, 10), (10, 10), (20, 10), (25, 10)]


async def test_an_empty_journal_ends_every_worker() -> None:
    feed = _RowFeed(PagedRows(0), page_size=10)  # type: ignore[arg-type]
    with anyio.fail_after(1):
        assert await feed.next() is None
        assert await feed.next() is None

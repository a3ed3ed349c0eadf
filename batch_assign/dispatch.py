"""Dispatcher: a bounded pool of workers sends every pending journal row, exactly once.

One task group owns `concurrency` workers, which take the journal's pending rows from a shared
paged feed, the feed's refill task and the journal writer. Per row: [GET pre-check (G4)] →
intent committed (without the pre-check, by the feed, ahead of the row) → POST → classify;
ambiguous answers are verified through GET (G3) and never blindly resent. A row's failure
becomes an `Outcome`; only auth failures, thresholds and signals stop the run, and then unsent
rows stay `pending`.
"""

from __future__ import annotations

import enum
import math
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.lowlevel
import structlog
from tenacity import RetryCallState

from batch_assign.autoscale import ConcurrencyController
from batch_assign.client import NexorClient
from batch_assign.errors import (
    AmbiguousError,
    FatalAuthError,
    NotAppliedError,
    PermanentError,
    RequestError,
)
from batch_assign.journal import Journal, JournalRow
from batch_assign.journal_writer import JournalWriter
from batch_assign.logs import CURRENT_ROW
from batch_assign.records import LeadState, MovementType, Outcome, Status
from batch_assign.retry import counts_against_budget, retrying, wait_after

__all__ = ["DispatchResult", "DispatchSettings", "Dispatcher", "Progress"]

_log = structlog.get_logger("batch_assign.dispatch")
_T = TypeVar("_T")
_PAGE = 2_000
_AHEAD = 128  # intents per commit, at most, when rows are sent without a pre-check
_MIN_SAMPLE = 50  # rows settled before --max-failure-rate is judged
NO_ACTIVE_RUN = ""  # journal marker: the pre-check saw no active run (NULL means not checked)


class _AuthDuringVerify(Exception):
    """The key was refused while verifying a row whose fate is unknown."""


class _Verdict(enum.Enum):
    APPLIED = "applied"
    UNTOUCHED = "untouched"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    concurrency: int = 8
    auto_concurrency: bool = False  # `concurrency` is then the ceiling
    target_rate: float = 0.0
    max_attempts: int = 5
    check_current: bool = True
    dry_run: bool = False
    max_failures: int | None = None
    max_failure_rate: float | None = None
    grace_s: float = 10.0
    handle_signals: bool = False


@dataclass(frozen=True, slots=True)
class DispatchResult:
    stop_reason: str | None
    exit_code: int | None  # set when the run was stopped: 3 aborted, 130/143 interrupted
    retries: int
    sent_rows: int
    duration_s: float


class _RowFeed:
    """The journal's pending rows in input order, shared by the workers.

    Workers take rows from `_ready` directly (a memory object stream would cost two task
    switches per row); a task of its own, `run()`, refills it from the journal a page read at a
    time, and wakes the workers that found it empty.

    With a `writer` (rows sent without a pre-check, whose intent holds nothing but the row), a
    fresh row is ready only once its intent is committed: `run()` commits the next `ahead` rows'
    intents in one go while the rows before them are in flight, so no worker waits for a commit
    of its own. On a crash, those rows are verified on resume like any row in doubt; the rows
    whose intent was committed but that no worker sent come back from `unsent()`.
    """

    def __init__(
        self,
        journal: Journal,
        writer: JournalWriter | None = None,
        *,
        ahead: int = _PAGE,
        page_size: int = _PAGE,
    ) -> None:
        self._journal = journal
        self._writer = writer
        self._ahead = max(ahead, 1)
        # refill when fewer rows are ready: with intents, early enough to hide the commit
        self._low = self._ahead if writer is not None else 1
        self._page_size = page_size
        self._page: deque[JournalRow] = deque()
        self._ready: deque[JournalRow] = deque()
        self._held: set[int] = set()  # intent queued or committed, row not handed out
        self._wanted = anyio.Event()
        self._refilled = anyio.Event()
        self._last_row = 0
        self._exhausted = False

    async def next(self) -> JournalRow | None:
        """The next row to send, or None when every pending row has been handed out."""
        while not self._ready:
            if self._exhausted:
                return None
            refilled = self._refilled
            self._wanted.set()
            await refilled.wait()
        row = self._ready.popleft()
        if len(self._ready) < self._low:
            self._wanted.set()
        if self._held:
            self._held.discard(row.row)
        return row

    def give_back(self, row: JournalRow) -> None:
        """A worker took `row` but will not send it (the run is stopping)."""
        if self._writer is not None and not row.in_doubt:
            self._held.add(row.row)

    def unsent(self) -> list[int]:
        """Rows whose intent this feed recorded but that no worker sent."""
        return sorted(self._held)

    async def run(self) -> None:
        """Refill `_ready` whenever it runs low, until the journal has no more pending rows; read
        the next page as soon as the last one is used up, while the workers send what is ready."""
        try:
            while True:
                if not self._page:
                    page = await anyio.to_thread.run_sync(
                        self._journal.todo, self._last_row, self._page_size
                    )
                    if not page:
                        return
                    self._page.extend(page)
                    self._last_row = page[-1].row
                if len(self._ready) >= self._low:
                    self._wanted = anyio.Event()
                    await self._wanted.wait()
                    continue
                rows = [self._page.popleft() for _ in range(min(self._ahead, len(self._page)))]
                fresh = [row.row for row in rows if not row.in_doubt]  # the rest keep theirs
                if self._writer is not None and fresh:
                    # No await until the intents are queued: once the dispatcher cancels this
                    # task, `unsent()` already holds every row whose intent may be committed.
                    await anyio.lowlevel.checkpoint_if_cancelled()
                    self._held.update(fresh)
                    await self._writer.intents([(row, None, None) for row in fresh])
                self._ready.extend(rows)
                refilled, self._refilled = self._refilled, anyio.Event()
                refilled.set()
        finally:
            self._exhausted = True
            self._refilled.set()


class Progress:
    """Live counters the CLI shows; updated by the workers."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.retrying = 0
        self.by_status: dict[str, int] = {}

    def settle(self, status: Status) -> None:
        self.done += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1


class Dispatcher:
    """Sends the journal's pending rows through `client`; see the module docstring."""

    def __init__(
        self,
        journal: Journal,
        client: NexorClient,
        settings: DispatchSettings,
        *,
        progress: Progress | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._journal = journal
        self._client = client
        self._settings = settings
        self._progress = progress or Progress(0)
        self._sleep = sleep
        self._writer = JournalWriter(journal, self._counters)
        self._stop_reason: str | None = None
        self._exit_code: int | None = None
        self._work_scope: anyio.CancelScope | None = None
        self._retries = 0
        self._sent_rows = 0
        self._failures = 0
        self._settled = 0
        # Without a pre-check an intent holds only the row: the feed records it ahead.
        self._intents_ahead = not (settings.check_current or settings.dry_run)
        self._autoscale = (
            ConcurrencyController(settings.target_rate, maximum=settings.concurrency)
            if settings.auto_concurrency
            else None
        )

    def _counters(self) -> dict[str, int]:
        return {
            "requests": self._client.requests,
            "rate_limited": self._client.rate_limited,
            "retries": self._retries,
            "sent_rows": self._sent_rows,
        }

    # --- the pool -------------------------------------------------------------------------

    async def run(self) -> DispatchResult:
        started = time.monotonic()
        feed = (
            _RowFeed(self._journal, self._writer, ahead=self._intents_per_commit())
            if self._intents_ahead
            else _RowFeed(self._journal)
        )
        signal_scope, feed_scope, side_scope = (anyio.CancelScope() for _ in range(3))
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._writer.run)
            outer.start_soon(self._run_in, feed.run, feed_scope)
            if self._settings.handle_signals:
                outer.start_soon(self._watch_signals, signal_scope)
            try:
                async with anyio.create_task_group() as pool:
                    self._work_scope = pool.cancel_scope
                    if self._autoscale is not None:
                        outer.start_soon(self._run_in, self._autoscale.run, side_scope)
                    for _ in range(self._settings.concurrency):
                        pool.start_soon(self._work, feed)
            finally:
                feed_scope.cancel()
                side_scope.cancel()
                for row in feed.unsent():  # its intent is on disk, but it was never sent
                    self._writer.outcome(Outcome(row, Status.PENDING))
                self._writer.close()
                signal_scope.cancel()
        # the writer's last flush ran before the outer group closed
        return DispatchResult(
            self._stop_reason,
            self._exit_code,
            self._retries,
            self._sent_rows,
            time.monotonic() - started,
        )

    def _intents_per_commit(self) -> int:
        """Rows per intent commit when the feed records intents: 128 (a commit's round trip took
        up to 10 ms here with the CPU busy; fewer rows per commit left workers waiting), or 0.1 s
        of rows at `--rate` if that is fewer (fewer rows to verify after a crash)."""
        rate = self._settings.target_rate
        return _AHEAD if rate <= 0 else min(_AHEAD, math.ceil(rate / 10))

    @staticmethod
    async def _run_in(task: Callable[[], Awaitable[None]], scope: anyio.CancelScope) -> None:
        with scope:
            await task()

    def stop(self, reason: str, exit_code: int) -> None:
        """Take no new rows; in-flight requests finish. The first reason wins."""
        if self._stop_reason is None:
            self._stop_reason = reason
            self._exit_code = exit_code
            _log.warning("batch_assign.stopping", reason=reason, exit_code=exit_code)

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with scope, anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
                if self._stop_reason is not None and signum == signal.SIGINT:
                    _log.warning("batch_assign.hard_stop", signal=name)
                    self._cancel_work()
                    continue
                self.stop(f"interrupted by {name}", 128 + int(signum))
                self._arm_grace()

    def _arm_grace(self) -> None:
        scope = self._work_scope
        if scope is not None:
            scope.deadline = min(scope.deadline, anyio.current_time() + self._settings.grace_s)

    def _cancel_work(self) -> None:
        if self._work_scope is not None:
            self._work_scope.cancel()

    async def _work(self, feed: _RowFeed) -> None:
        while self._stop_reason is None:  # once stopped, unsent rows stay pending for a resume
            row = await feed.next()
            if row is None:
                return
            if self._stop_reason is not None:  # stopped while this worker waited for a row
                feed.give_back(row)
                return
            current = CURRENT_ROW.set((row.row, row.lead_id))  # every log line names the row
            try:
                outcome = await self._outcome_of(row)
                if outcome is not None:
                    self._writer.outcome(outcome)
                    self._settle(outcome)
            finally:
                CURRENT_ROW.reset(current)

    async def _outcome_of(self, row: JournalRow) -> Outcome | None:
        """The row's outcome; None if it stays in doubt for a resume to verify."""
        try:
            if self._autoscale is None:
                return await self._process(row)
            async with self._autoscale.limiter:
                if self._stop_reason is not None:  # stopped while this worker waited its turn
                    return None if row.in_doubt else Outcome(row.row, Status.PENDING)
                started = time.monotonic()
                outcome = await self._process(row)
                self._autoscale.observe(time.monotonic() - started)
                return outcome
        except FatalAuthError as exc:
            # refused: nothing was applied, the row stays pending for a resume
            self.stop(f"authentication failed ({exc.message})", 3)
            return Outcome(row.row, Status.PENDING, http_status=exc.http_status)
        except _AuthDuringVerify as exc:
            # the row stays in doubt in the journal: a resume verifies it
            self.stop(f"authentication failed ({exc})", 3)
            return None

    def _settle(self, outcome: Outcome) -> None:
        if outcome.status is Status.PENDING:
            return
        self._progress.settle(outcome.status)
        self._settled += 1
        if outcome.status in (Status.FAILED, Status.UNCERTAIN):
            self._failures += 1
            _log.warning(
                "batch_assign.row_failed",
                row=outcome.row,
                status=str(outcome.status),
                http_status=outcome.http_status,
                error=outcome.error,
            )
        limit, rate = self._settings.max_failures, self._settings.max_failure_rate
        if limit is not None and self._failures > limit:
            self.stop(f"{self._failures} rows failed, more than --max-failures {limit}", 3)
        if (
            rate is not None
            and self._settled >= _MIN_SAMPLE
            and self._failures / self._settled > rate
        ):
            self.stop(
                f"{self._failures} of {self._settled} rows failed "
                f"({self._failures / self._settled:.0%}), above --max-failure-rate {rate:g}",
                3,
            )

    # --- one row --------------------------------------------------------------------------

    async def _process(self, row: JournalRow) -> Outcome | None:
        """The row's outcome; None if it stays in doubt for the next run to verify."""
        started = time.monotonic()
        prior_run, previous = row.prior_run_id, row.previous_workflow_id
        if row.in_doubt:
            verdict, state = await self._verify(row, prior_run)
            if verdict is _Verdict.APPLIED:
                return self._verified(
                    row, state, prior_run, previous, "resumed after a stop", started, 0
                )
            if verdict is _Verdict.UNKNOWN and state is None:
                return None  # the lead could not be read: left in doubt, not given up on
            if verdict is _Verdict.UNKNOWN:
                return self._uncertain(row, previous, "resumed after a stop", started, 0, state)
        elif self._settings.check_current or self._settings.dry_run:
            try:
                state = await self._read_lead(row.lead_id)
            except (PermanentError, NotAppliedError) as exc:
                return self._failed(row, exc, started, 0, what="pre-check GET")
            if row.workflow_id in state.workflow_ids:
                run = state.run_in(row.workflow_id)
                return Outcome(
                    row.row,
                    Status.UNCHANGED,
                    workflow_run_id=run[0] if run else None,
                    workflow_name=run[2] if run else None,
                    previous_workflow_id=row.workflow_id,
                    http_status=200,
                    duration_ms=_ms(started),
                )
            prior_run = state.current_run_id or NO_ACTIVE_RUN
            previous = state.current_workflow_id
            if self._settings.dry_run:
                return Outcome(
                    row.row,
                    Status.WOULD_REASSIGN if previous else Status.WOULD_ENROLL,
                    movement_type=MovementType.REASSIGNMENT
                    if previous
                    else MovementType.ENROLLMENT,
                    previous_workflow_id=previous,
                    http_status=200,
                    duration_ms=_ms(started),
                )
        if not self._intents_ahead:  # else the feed committed the row's intent before
            await self._writer.intent(row.row, prior_run, previous)
        self._sent_rows += 1
        return await self._send(row, prior_run, previous, started)

    async def _send(
        self, row: JournalRow, prior_run: str | None, previous: str | None, started: float
    ) -> Outcome:
        attempts = 0

        async def attempt_once() -> Outcome:
            nonlocal attempts
            attempts += 1
            try:
                answer = await self._client.assign(
                    row.lead_id, row.workflow_id, row.reason, row.actor_id
                )
            except AmbiguousError as exc:
                verdict, state = await self._verify(row, prior_run)
                if verdict is _Verdict.APPLIED:
                    return self._verified(
                        row, state, prior_run, previous, exc.message, started, attempts
                    )
                if verdict is _Verdict.UNKNOWN:
                    return self._uncertain(row, previous, exc.message, started, attempts, state)
                raise NotAppliedError(
                    f"{exc.message} (verified: not applied)",
                    lead_id=row.lead_id,
                    http_status=exc.http_status,
                ) from None
            return Outcome(
                row.row,
                Status.SUCCEEDED,
                movement_type=answer.movement_type,
                workflow_run_id=answer.workflow_run_id,
                workflow_name=answer.workflow_name,
                paused=answer.paused,
                previous_workflow_id=previous,
                http_status=answer.http_status,
                attempts=attempts,
                duration_ms=_ms(started),
            )

        try:
            return await self._with_retries(attempt_once)
        except PermanentError as exc:
            return self._failed(row, exc, started, attempts)
        except NotAppliedError as exc:
            return self._failed(row, exc, started, attempts, gave_up=True)

    async def _with_retries(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """`call()`, retried by the tenacity policy when it raises `NotAppliedError`.

        The first attempt runs bare: most rows never need tenacity, and setting it up per row
        showed in the profile.
        """
        try:
            return await call()
        except NotAppliedError as first:
            budget = self._settings.max_attempts - counts_against_budget(first)
            if budget < 1:
                raise
            wait = wait_after(first, 1)
            self._note_retry(1, wait, first)
            await self._sleep(wait)
        async for attempt in retrying(budget, sleep=self._sleep, on_retry=self._on_retry):
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _read_lead(self, lead_id: str) -> LeadState:
        """GET the lead, retrying what can be retried (a GET is safe to repeat)."""
        return await self._with_retries(lambda: self._client.get_lead(lead_id))

    async def _verify(
        self, row: JournalRow, prior_run: str | None
    ) -> tuple[_Verdict, LeadState | None]:
        """G3: decide from the lead's active run whether the assignment took effect."""
        try:
            state = await self._read_lead(row.lead_id)
        except FatalAuthError as exc:
            raise _AuthDuringVerify(exc.message) from None
        except RequestError as exc:
            _log.warning("batch_assign.verify_failed", error=exc.message)
            return _Verdict.UNKNOWN, None
        run = state.run_in(row.workflow_id)
        if prior_run is None:  # the lead's run before sending is not known (--no-check-current)
            return (_Verdict.APPLIED if run else _Verdict.UNTOUCHED), state
        if run is not None and run[0] != prior_run:
            return _Verdict.APPLIED, state
        current = state.current_run_id or NO_ACTIVE_RUN
        if current == prior_run and run is None:
            return _Verdict.UNTOUCHED, state
        return _Verdict.UNKNOWN, state

    def _on_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self._note_retry(state.attempt_number + 1, state.upcoming_sleep, exc)

    def _note_retry(self, attempt: int, wait: float, exc: BaseException | None) -> None:
        self._retries += 1
        self._progress.retrying += 1
        _log.info(
            "batch_assign.retry_scheduled",
            attempt=attempt,
            wait_s=round(wait, 3),
            http_status=getattr(exc, "http_status", None),
            error=getattr(exc, "message", str(exc)),
        )

    # --- outcomes -------------------------------------------------------------------------

    def _verified(
        self,
        row: JournalRow,
        state: LeadState | None,
        prior_run: str | None,
        previous: str | None,
        why: str,
        started: float,
        attempts: int,
    ) -> Outcome:
        run = state.run_in(row.workflow_id) if state else None
        movement = None
        found = "verified applied via GET"
        if prior_run is not None:  # the pre-check saw the lead before sending
            movement = MovementType.REASSIGNMENT if prior_run else MovementType.ENROLLMENT
        else:  # the lead may have been in its target before: its run then was not recorded
            found = (
                "in its target workflow per GET, not resent (without the pre-check, whether this "
                "request moved it is not known)"
            )
        return Outcome(
            row.row,
            Status.SUCCEEDED,
            movement_type=movement,
            workflow_run_id=run[0] if run else None,
            workflow_name=run[2] if run else None,
            previous_workflow_id=previous,
            http_status=200,
            error=f"no answer ({why}); {found}",
            attempts=attempts,
            duration_ms=_ms(started),
        )

    def _uncertain(
        self,
        row: JournalRow,
        previous: str | None,
        why: str,
        started: float,
        attempts: int,
        state: LeadState | None,
    ) -> Outcome:
        if state is None:
            detail = "the lead could not be read back to verify"
        else:
            seen = state.current_workflow_id or "no active workflow"
            detail = f"the lead is now in {seen}, neither its previous run nor the target"
        return Outcome(
            row.row,
            Status.UNCERTAIN,
            previous_workflow_id=previous,
            error=f"no answer ({why}); {detail}: check this lead by hand",
            attempts=attempts,
            duration_ms=_ms(started),
        )

    def _failed(
        self,
        row: JournalRow,
        exc: RequestError,
        started: float,
        attempts: int,
        *,
        what: str | None = None,
        gave_up: bool = False,
    ) -> Outcome:
        error = exc.message
        if gave_up:
            error = f"gave up after {max(attempts, 1)} attempt(s): {error}"
        if what:
            error = f"{what}: {error}"
        return Outcome(
            row.row,
            Status.FAILED,
            http_status=exc.http_status,
            error=error,
            attempts=attempts,
            duration_ms=_ms(started),
        )


def _ms(started: float) -> int:
    return math.ceil((time.monotonic() - started) * 1000)

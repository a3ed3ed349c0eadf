"""The job, end to end: input → journal (ingest or resume) → dispatcher → report files.

`run_job` is what `batch-assign run` calls; it returns the run's `RunSummary`, whose `exit_code`
follows DESIGN section 6.
"""

from __future__ import annotations

import gc
import importlib.util
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import anyio
import structlog

from batch_assign.client import NexorClient
from batch_assign.config import RunConfig
from batch_assign.dispatch import Dispatcher, DispatchResult, DispatchSettings, Progress
from batch_assign.journal import Journal, JournalState, fingerprint_file
from batch_assign.limiter import RateLimiter
from batch_assign.lock import RunLock
from batch_assign.planner import ShardCounter, take_shard
from batch_assign.reader import check_input_file, read_batches, spool_stdin
from batch_assign.records import RunSummary, Status
from batch_assign.report import (
    check_report_path,
    companion_path,
    write_failures,
    write_report,
    write_summary,
)

# uvloop where it is installed (not on Windows): its socket writes and callbacks cost less CPU
# per request than asyncio's own loop (bench/throughput.py).
LOOP_OPTIONS = {"use_uvloop": importlib.util.find_spec("uvloop") is not None}

__all__ = ["JobFiles", "ingest", "job_files", "run_job"]

_log = structlog.get_logger("batch_assign.job")
_OK = frozenset({Status.SUCCEEDED, Status.UNCHANGED})
_OK_DRY = _OK | {Status.WOULD_ENROLL, Status.WOULD_REASSIGN}


@dataclass(frozen=True, slots=True)
class JobFiles:
    """Where a run with this report path keeps its files (DESIGN section 5)."""

    report: Path
    failures: Path
    summary: Path
    journal: Path
    stdin_copy: Path


def job_files(report: Path) -> JobFiles:
    return JobFiles(
        report=report,
        failures=companion_path(report, ".failures.csv"),
        summary=companion_path(report, ".summary.json"),
        journal=companion_path(report, ".journal.sqlite"),
        stdin_copy=companion_path(report, ".input.csv"),
    )


def ingest(config: RunConfig, journal: Journal, input_path: str) -> JournalState:
    """Bind the journal to this input and these options: resume it, or read the input into it."""
    digest = fingerprint_file(input_path)
    options = config.sending_options()
    if config.restart:
        journal.reset()
    journal.check_binding(digest, options, input_path)
    if not journal.ingested:
        _, batches = read_batches(
            input_path,
            column_map=config.column_map,
            workflow_id=config.workflow_id,
            reason=config.reason,
            actor_id=config.actor_id,
        )
        counter = ShardCounter()
        journal.ingest(
            take_shard(batches, config.shard, counter),
            input_sha256=digest,
            input_name=input_path,
            options=options,
            duplicates=config.duplicates,
        )
        journal.set_meta("input_rows", str(counter.rows))
        return journal.state()
    state = journal.state()
    _log.info(
        "batch_assign.resuming",
        message=f"resuming: {state.settled:,} rows settled, {state.in_doubt:,} to verify, "
        f"{state.pending:,} to go",
        settled=state.settled,
        to_verify=state.in_doubt,
        to_go=state.pending,
    )
    return state


def _exit_code(statuses: dict[str, int], stopped_with: int | None, dry_run: bool) -> int:
    if stopped_with is not None:
        return stopped_with
    fine = _OK_DRY if dry_run else _OK
    if any(count and status not in fine for status, count in statuses.items()):
        return 1
    return 0


def run_job(
    config: RunConfig,
    *,
    on_start: Callable[[JournalState, Progress], None] | None = None,
    handle_signals: bool = False,
    dry_run: bool = False,
) -> RunSummary:
    """Run (or resume) the job described by `config` and write its report files."""
    check_report_path(config.report)
    files = job_files(config.report)
    if config.input != "-":
        check_input_file(config.input)
    job_lock = (
        RunLock(config.report.parent / f".{config.job_name}.job.lock")
        if config.job_name
        else nullcontext()
    )
    with job_lock, RunLock(companion_path(config.report, ".lock")):
        input_path = config.input
        if input_path == "-":
            input_path = str(spool_stdin(files.stdin_copy))
        # File-level problems (format, columns, defaults) fail here, before a journal is made.
        read_batches(
            input_path,
            column_map=config.column_map,
            workflow_id=config.workflow_id,
            reason=config.reason,
            actor_id=config.actor_id,
        )
        if not dry_run:
            return _run_locked(config, files, input_path, on_start, handle_signals, dry_run)
        with tempfile.TemporaryDirectory(prefix="batch-assign-dry-run-") as scratch:
            files = replace(files, journal=Path(scratch) / "dry-run.journal.sqlite")
            config = replace(config, restart=True)
            return _run_locked(config, files, input_path, on_start, handle_signals, dry_run)


def _run_locked(
    config: RunConfig,
    files: JobFiles,
    input_path: str,
    on_start: Callable[[JournalState, Progress], None] | None,
    handle_signals: bool,
    dry_run: bool,
) -> RunSummary:
    journal = Journal(files.journal)
    try:
        started = time.monotonic()
        state = ingest(config, journal, input_path)
        progress = Progress(state.rows)
        progress.done = state.settled
        if on_start is not None:
            on_start(state, progress)
        session = journal.start_session()
        _log.info(
            "batch_assign.run_started",
            rows=state.rows,
            settled=state.settled,
            dry_run=dry_run,
            **config.public(),
        )
        limiter = RateLimiter(config.rate, config.burst, pool=config.concurrency)
        settings = DispatchSettings(
            concurrency=config.concurrency,
            auto_concurrency=config.auto_concurrency,
            target_rate=config.rate,
            max_attempts=config.max_attempts,
            check_current=config.check_current,
            dry_run=dry_run,
            max_failures=config.max_failures,
            max_failure_rate=config.max_failure_rate,
            grace_s=config.grace,
            handle_signals=handle_signals,
        )

        async def dispatch() -> tuple[int, int, DispatchResult]:
            async with NexorClient(
                config.base_url,
                config.api_key,
                limiter=limiter,
                concurrency=config.concurrency,
                timeout=config.timeout,
            ) as client:
                dispatcher = Dispatcher(journal, client, settings, progress=progress)
                result = await dispatcher.run()
                return client.requests, client.rate_limited, result

        # What start-up built lives for the whole run: keep it out of the collector's full
        # passes, whose multi-millisecond pauses otherwise show as send jitter and CPU.
        gc.collect()
        gc.freeze()
        try:
            requests, rate_limited, result = anyio.run(dispatch, backend_options=LOOP_OPTIONS)
        finally:
            gc.unfreeze()
        duration = time.monotonic() - started
        statuses, movements = journal.counts()
        exit_code = _exit_code(statuses, result.exit_code, dry_run)
        journal.end_session(
            session,
            requests=requests,
            retries=result.retries,
            rate_limited=rate_limited,
            duration_s=duration,
            sent_rows=result.sent_rows,
            exit_code=exit_code,
            stop_reason=result.stop_reason,
        )
        totals = journal.session_totals()
        summary = RunSummary(
            rows=state.rows,
            statuses=statuses,
            movement_types=movements,
            requests=int(totals["requests"]),
            retries=int(totals["retries"]),
            rate_limited=int(totals["rate_limited"]),
            duration_s=round(duration, 3),
            achieved_rate=round(requests / result.duration_s, 2) if result.duration_s else 0.0,
            exit_code=exit_code,
            stop_reason=result.stop_reason,
            extra={
                "sessions": int(totals["sessions"]),
                "report": str(files.report),
                "failures": str(files.failures),
                "dry_run": dry_run,
                "shard": str(config.shard) if config.shard else None,
                "input_rows": int(journal.meta().get("input_rows", state.rows)),
                "input_sha256": journal.meta().get("input_sha256"),
                "dispatch_s": round(result.duration_s, 3),
            },
        )
        _log.info("batch_assign.run_finished", **asdict(summary))
        write_report(journal, files.report)
        write_failures(journal, input_path, files.failures)
        write_summary(summary, files.summary)
        return summary
    finally:
        journal.close()

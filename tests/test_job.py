"""The job end to end, over loopback against the sandbox: every row once, nothing doubled."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import (
    make_migration,
    new_id,
    read_json,
    read_report,
    run_args,
    run_cli,
    start_sandbox,
    write_csv,
)

from batch_assign.config import RunConfig
from batch_assign.errors import JournalMismatchError
from batch_assign.job import run_job
from batch_assign.journal import REPORT_COLUMNS
from batch_assign.sandbox import FaultRule, RunningSandbox

FAST = {"rate": 0.0, "concurrency": 16}


def config(box: RunningSandbox, input_path: Path, report: Path, **overrides: Any) -> RunConfig:
    options: dict[str, Any] = {"base_url": box.url, "api_key": box.api_key, **FAST, **overrides}
    return RunConfig(input=str(input_path), report=report, **options)


def assert_each_moved_once(
    box: RunningSandbox, seed: dict[str, Any], rows: list[dict[str, str]], *, checked: bool = True
) -> None:
    """G1/G2 from the audit: one assignment per lead that was not already in its target, none
    else (`checked`: with the pre-check; without it, every lead is assigned once)."""
    current = {lead["id"]: lead.get("workflow_id") for lead in seed["leads"]}
    per_lead = Counter(entry.lead_id for entry in box.store.audit())
    for row in rows:
        moved = current[row["lead_id"]] != row["workflow_id"] or not checked
        assert (1 if moved else 0) == per_lead[row["lead_id"]], row
        assert row["workflow_id"] == box.store.active_workflow(row["lead_id"])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_migration_every_row_once(tmp_path: Path, fmt: str) -> None:
    """A few thousand rows end succeeded or unchanged; the audit shows one move per moved lead."""
    path, seed, rows = make_migration(tmp_path, 2_400)
    if fmt == "parquet":
        parquet = tmp_path / "input.parquet"
        pl.read_csv(path).write_parquet(parquet)
        path = parquet
    report = tmp_path / "out" / "run.report.csv"
    with start_sandbox(seed) as box:
        summary = run_job(config(box, path, report))
        assert_each_moved_once(box, seed, rows)
        assert box.settings.stats["POST assign"] == 1_600  # exactly the rows that move
    got = read_report(report)
    assert list(REPORT_COLUMNS) == list(got[0])
    assert [str(i) for i in range(1, 2_401)] == [r["row"] for r in got]
    assert [r["lead_id"] for r in rows] == [r["lead_id"] for r in got]
    assert summary.statuses == {"succeeded": 1_600, "unchanged": 800}
    assert summary.movement_types == {"enrollment": 800, "reassignment": 800}
    assert summary.exit_code == 0
    first, second, third = got[0], got[1], got[2]
    assert (
        first["status"],
        first["movement_type"],
        first["previous_workflow_id"],
        first["http_status"],
        first["attempts"],
    ) == ("succeeded", "enrollment", "", "201", "1")
    assert ("succeeded", "reassignment", seed["workflows"][2]["id"]) == (
        second["status"],
        second["movement_type"],
        second["previous_workflow_id"],
    )
    assert (third["status"], third["attempts"]) == ("unchanged", "0")
    assert first["workflow_run_id"]
    assert first["workflow_name"] == "WF 0"
    assert first["paused"] == "false"
    assert first["completed_at"].endswith("Z")
    summary_file = read_json(tmp_path / "out" / "run.report.summary.json")
    assert (summary_file["rows"], summary_file["exit_code"]) == (2_400, 0)
    assert (
        (tmp_path / "out" / "run.report.failures.csv").read_text().strip()
    ) == "lead_id,workflow_id,reason,actor_id,error"


def test_invalid_duplicate_and_unknown_rows(tmp_path: Path) -> None:
    """Bad rows get their status and message, do not stop the good ones, and land in failures."""
    wf, other = new_id(), new_id()
    good = [new_id() for _ in range(3)]
    unknown_lead, unknown_wf = new_id(), new_id()
    seed = {
        "workflows": [{"id": wf, "name": "Target"}, {"id": other, "name": "Other"}],
        "leads": [{"id": lead, "first_name": "x"} for lead in good],
    }
    rows = [
        {"lead_id": good[0], "workflow_id": wf, "note": "first"},
        {"lead_id": "LEAD-7", "workflow_id": wf, "note": "invalid lead"},
        {"lead_id": good[0].upper(), "workflow_id": other, "note": "duplicate"},
        {"lead_id": unknown_lead, "workflow_id": wf, "note": "unknown lead"},
        {"lead_id": good[1], "workflow_id": unknown_wf, "note": "unknown workflow"},
        {"lead_id": good[2], "workflow_id": "", "note": "no workflow"},
    ]
    path = write_csv(tmp_path / "in.csv", rows)
    report = tmp_path / "in.report.csv"
    with start_sandbox(seed) as box:
        summary = run_job(config(box, path, report))
        posts = box.settings.stats["POST assign"]
    got = {int(r["row"]): r for r in read_report(report)}
    assert [got[i]["status"] for i in range(1, 7)] == [
        "succeeded",
        "invalid",
        "duplicate",
        "failed",
        "failed",
        "invalid",
    ]
    assert got[2]["error"] == "column 'lead_id': 'LEAD-7' is not a valid UUID"
    assert got[3]["error"] == "lead already in row 1 (--duplicates first)"
    assert (got[4]["http_status"], got[4]["attempts"]) == (
        "404",
        "0",
    )  # the pre-check found no lead
    assert "Lead not found" in got[4]["error"]
    assert (got[5]["http_status"], got[5]["attempts"]) == ("404", "1")  # not retried
    assert "Workflow not found" in got[5]["error"]
    assert posts == 2  # row 1 and the unknown-workflow row, once each
    assert summary.exit_code == 1
    failures = read_report(tmp_path / "in.report.failures.csv")
    assert list(failures[0]) == ["lead_id", "workflow_id", "note", "error"]
    assert [f["note"] for f in failures] == [
        "invalid lead",
        "unknown lead",
        "unknown workflow",
        "no workflow",
    ]


def test_a_row_with_an_unquoted_comma_is_invalid_and_the_rest_are_sent(tmp_path: Path) -> None:
    """G7 end to end: the row whose reason holds an unquoted comma is reported `invalid` and never
    sent (its actor and reason would be shifted), the others move once, and the failures file
    gives the row back in the input's columns with the reason."""
    wf = new_id()
    leads = [new_id() for _ in range(4)]
    seed = {"workflows": [{"id": wf, "name": "Target"}], "leads": [{"id": x} for x in leads]}
    lines = ["lead_id,workflow_id,reason,actor_id"]
    lines += [f"{lead},{wf},moved,ops" for lead in leads[:2]]
    lines.append(f"{leads[2]},{wf},moved, finally,ops")
    lines.append(f"{leads[3]},{wf},moved,ops")
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines) + "\n")
    report = tmp_path / "in.report.csv"
    with start_sandbox(seed) as box:
        summary = run_job(config(box, path, report))
        moved = Counter(entry.lead_id for entry in box.store.audit())
    assert moved == Counter({leads[0]: 1, leads[1]: 1, leads[3]: 1})
    got = {int(r["row"]): r for r in read_report(report)}
    assert [got[i]["status"] for i in range(1, 5)] == [
        "succeeded",
        "succeeded",
        "invalid",
        "succeeded",
    ]
    expected = "5 fields where the header has 4 (past it: 'ops'); quote values that contain commas"
    assert got[3]["error"] == expected
    assert summary.exit_code == 1
    failures = read_report(tmp_path / "in.report.failures.csv")
    assert failures == [
        {
            "lead_id": leads[2],
            "workflow_id": wf,
            "reason": "moved",
            "actor_id": " finally",
            "error": expected,
        }
    ]


def dispatchers_made(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every `Dispatcher` the job makes from here on, so a test can stop it from a hook."""
    import batch_assign.dispatch as dispatch

    made: list[dispatch.Dispatcher] = []
    real_init = dispatch.Dispatcher.__init__

    def init(self: dispatch.Dispatcher, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(dispatch.Dispatcher, "__init__", init)
    return made


@pytest.mark.parametrize("check_current", [True, False])
def test_a_stop_while_a_page_is_read_sends_nothing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check_current: bool
) -> None:
    """A stop that comes while the workers wait for the journal's next page: the rows that page
    hands out are not sent but stay pending for a resume, and a resume sends each of them once.
    Without the pre-check, the feed commits rows' intents ahead: those rows are pending too,
    not in doubt."""
    import batch_assign.dispatch as dispatch
    from batch_assign.journal import Journal

    path, seed, rows = make_migration(tmp_path, 12)
    report = tmp_path / "in.report.csv"
    dispatchers = dispatchers_made(monkeypatch)
    real_todo = Journal.todo

    def todo(self: Journal, after_row: int, limit: int) -> list[Any]:
        if after_row > 0 and dispatchers:  # the second page: stop, as a signal or limit would
            time.sleep(0.5)  # (in a thread) until the workers wait for this page
            dispatchers[-1].stop("stopped for the test", 3)
        return real_todo(self, after_row, limit)

    monkeypatch.setattr(dispatch._RowFeed.__init__, "__kwdefaults__", {"ahead": 5, "page_size": 5})
    monkeypatch.setattr(Journal, "todo", todo)
    with start_sandbox(seed) as box:
        options = {"concurrency": 2, "check_current": check_current}
        stopped = run_job(config(box, path, report, **options))
        assert 3 == stopped.exit_code
        statuses = [r["status"] for r in read_report(report)]
        assert ["pending"] * 7 == statuses[5:]
        assert "pending" not in statuses[:5]
        moved = Counter(entry.lead_id for entry in box.store.audit())
        assert set(moved) <= {row["lead_id"] for row in rows[:5]}
        monkeypatch.setattr(Journal, "todo", real_todo)
        resumed = run_job(config(box, path, report, **options))
        assert 0 == resumed.exit_code
        assert_each_moved_once(box, seed, rows, checked=check_current)


def test_a_stop_sends_nothing_more_from_workers_waiting_for_their_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --concurrency auto, workers beyond the current limit hold a row while they wait for
    their turn; a stop returns those rows to pending rather than sending them."""
    from batch_assign.autoscale import AUTO_START, ConcurrencyController

    path, seed, rows = make_migration(tmp_path, 120)
    report = tmp_path / "auto.report.csv"
    dispatchers = dispatchers_made(monkeypatch)
    real_observe = ConcurrencyController.observe

    def observe(self: ConcurrencyController, seconds: float) -> None:
        dispatchers[-1].stop("stopped for the test", 3)  # the first answer: stop
        real_observe(self, seconds)

    monkeypatch.setattr(ConcurrencyController, "observe", observe)
    options = {"concurrency": 64, "auto_concurrency": True, "check_current": False}
    with start_sandbox(seed, latency_ms=300) as box:
        stopped = run_job(config(box, path, report, **options))
        assert 3 == stopped.exit_code
        sent = box.settings.stats["POST assign"]
        assert sent <= AUTO_START
        statuses = Counter(r["status"] for r in read_report(report))
        assert {"succeeded": sent, "pending": 120 - sent} == dict(statuses)
        monkeypatch.setattr(ConcurrencyController, "observe", real_observe)
        resumed = run_job(config(box, path, report, **options))
        assert 0 == resumed.exit_code
        assert_each_moved_once(box, seed, rows, checked=False)


def test_503_and_429_are_retried_until_they_succeed(tmp_path: Path) -> None:
    """Not-applied answers (503 bursts, 429 with Retry-After) are retried; nothing is doubled."""
    path, seed, rows = make_migration(tmp_path, 90)
    report = tmp_path / "r.report.csv"
    rules = (FaultRule("503", rate=0.08, burst=2),)
    with start_sandbox(seed, rate_limit=100, burst=5, rules=rules) as box:
        summary = run_job(
            config(box, path, report, rate=150, burst=10, concurrency=8, max_attempts=8)
        )
        assert_each_moved_once(box, seed, rows)
        statuses = box.settings.stats
    assert summary.statuses == {"succeeded": 60, "unchanged": 30}
    assert statuses["status 503"] > 0
    assert statuses["status 429"] > 0
    assert summary.rate_limited == statuses["status 429"]
    assert summary.retries >= statuses["status 503"]


@pytest.mark.parametrize("mode", ["500-after", "drop-after", "slow-after"])
def test_after_apply_faults_are_verified_never_resent(tmp_path: Path, mode: str) -> None:
    """When the API applied the move but the answer was lost, a GET proves it; no second POST."""
    path, seed, rows = make_migration(tmp_path, 90)
    report = tmp_path / "r.report.csv"
    rule = FaultRule(mode, rate=0.4, delay_s=2.0)
    with start_sandbox(seed, rules=(rule,)) as box:
        summary = run_job(config(box, path, report, timeout=0.5))
        injected = box.settings.faults.injected[mode]
        assert_each_moved_once(box, seed, rows)
    got = read_report(report)
    verified = [r for r in got if "verified applied" in r["error"]]
    assert injected > 5
    assert injected == len(verified)
    assert {"succeeded"} == {r["status"] for r in verified}
    assert summary.statuses == {"succeeded": 60, "unchanged": 30}


def test_without_the_pre_check_a_lost_answer_is_not_claimed_as_ours(tmp_path: Path) -> None:
    """--no-check-current records no run before sending, so a GET that finds the lead in its
    target cannot tell our request from an earlier move: the row is succeeded and not resent,
    but the report does not say the request was verified applied."""
    path, seed, _rows = make_migration(tmp_path, 60)
    report = tmp_path / "r.report.csv"
    with start_sandbox(seed, rules=(FaultRule("drop-after", rate=0.4),)) as box:
        summary = run_job(config(box, path, report, check_current=False))
        injected = box.settings.faults.injected["drop-after"]
        assert len(box.store.audit()) == 60  # each lead once: nothing was resent
    got = read_report(report)
    found = [r for r in got if "whether this request moved it is not known" in r["error"]]
    assert injected > 5
    assert injected == len(found)
    assert {"succeeded"} == {r["status"] for r in found}
    assert {""} == {r["movement_type"] for r in found}
    assert not any("verified applied" in r["error"] for r in got)
    assert summary.statuses == {"succeeded": 60}


def test_500_before_is_verified_then_retried(tmp_path: Path) -> None:
    """A 500 that applied nothing is verified as untouched, then sent again and succeeds once."""
    path, seed, rows = make_migration(tmp_path, 30)
    moved = [r["lead_id"] for i, r in enumerate(rows) if i % 3 != 2]
    rule = FaultRule("500-before", lead_ids=frozenset(moved[:5]), times=1)
    with start_sandbox(seed, rules=(rule,)) as box:
        summary = run_job(config(box, path, tmp_path / "r.report.csv"))
        assert_each_moved_once(box, seed, rows)
    got = {r["lead_id"]: r for r in read_report(tmp_path / "r.report.csv")}
    assert [got[lead]["attempts"] for lead in moved[:5]] == ["2"] * 5
    assert summary.exit_code == 0


def test_wrong_key_stops_the_run_with_exit_3(tmp_path: Path) -> None:
    """A refused key stops everything after a handful of requests; unsent rows stay pending."""
    path, seed, _ = make_migration(tmp_path, 500)
    report = tmp_path / "r.report.csv"
    with start_sandbox(seed) as box:
        result = run_cli(
            *run_args(path, report, box), env={"NEXOR_API_KEY": "nxr_live_definitely_wrong"}
        )
        seen = sum(v for k, v in box.settings.stats.items() if k.startswith("status"))
    assert result.returncode == 3, result.stderr
    assert seen <= 20
    assert "authentication failed" in result.stdout + result.stderr
    assert "nxr_live_definitely_wrong" not in result.stdout + result.stderr
    statuses = Counter(r["status"] for r in read_report(report))
    assert statuses == {"pending": 500}
    assert box.store.audit() == []


def test_no_check_current_reassigns_leads_already_in_place(tmp_path: Path) -> None:
    """--no-check-current sends without the GET: leads already in their target are reassigned."""
    path, seed, _rows = make_migration(tmp_path, 30)
    with start_sandbox(seed) as box:
        summary = run_job(config(box, path, tmp_path / "r.report.csv", check_current=False))
        assert box.settings.stats["GET lead"] == 0
        assert len(box.store.audit()) == 30
    assert summary.statuses == {"succeeded": 30}


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_report_formats(tmp_path: Path, suffix: str) -> None:
    """The report's format follows its extension, with the same columns and order."""
    path, seed, _rows = make_migration(tmp_path, 12)
    report = tmp_path / f"r.report{suffix}"
    with start_sandbox(seed) as box:
        run_job(config(box, path, report))
    frame = pl.read_parquet(report) if suffix == ".parquet" else pl.read_ndjson(report)
    assert list(REPORT_COLUMNS) == frame.columns
    assert list(range(1, 13)) == frame["row"].to_list()
    assert {"succeeded", "unchanged"} == set(frame["status"].to_list())


def test_rerun_sends_nothing_and_changed_input_is_refused(tmp_path: Path) -> None:
    """The same command again resumes: settled rows are skipped. A changed input is refused."""
    path, seed, rows = make_migration(tmp_path, 30)
    report = tmp_path / "r.report.csv"
    with start_sandbox(seed) as box:
        run_job(config(box, path, report))
        posts = box.settings.stats["POST assign"]
        again = run_job(config(box, path, report))
        assert posts == box.settings.stats["POST assign"]
        assert again.statuses == {"succeeded": 20, "unchanged": 10}
        assert_each_moved_once(box, seed, rows)
        path.write_text(path.read_text() + f"{new_id()},{rows[0]['workflow_id']},,\n")
        with pytest.raises(JournalMismatchError, match="changed since this run started"):
            run_job(config(box, path, report))
        path.write_text(path.read_text().rsplit("\n", 2)[0] + "\n")
        with pytest.raises(JournalMismatchError, match="reason was None, now 'x'"):
            run_job(config(box, path, report, reason="x"))


def test_stdin_input(tmp_path: Path) -> None:
    """`-` reads CSV from standard input."""
    path, seed, rows = make_migration(tmp_path, 9)
    report = tmp_path / "stdin.report.csv"
    with start_sandbox(seed) as box:
        result = run_cli(
            *run_args("-", report, box),
            env={"NEXOR_API_KEY": box.api_key},
            input=path.read_bytes(),
        )
        assert_each_moved_once(box, seed, rows)
    assert result.returncode == 0, result.stderr
    assert len(read_report(report)) == 9


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("first", ["pending-ok", "lead already in row 1 (--duplicates first)"]),
        ("last", ["lead again later, in row 2 (--duplicates last)", "pending-ok"]),
    ],
)
def test_duplicate_policies(tmp_path: Path, policy: str, expected: list[str]) -> None:
    """--duplicates first keeps the first row of a lead, last the last; the other is `duplicate`."""
    wf1, wf2, lead = new_id(), new_id(), new_id()
    seed = {
        "workflows": [{"id": wf1, "name": "A"}, {"id": wf2, "name": "B"}],
        "leads": [{"id": lead, "first_name": "x"}],
    }
    path = write_csv(
        tmp_path / "in.csv",
        [{"lead_id": lead, "workflow_id": wf1}, {"lead_id": lead, "workflow_id": wf2}],
    )
    with start_sandbox(seed) as box:
        run_job(config(box, path, tmp_path / "r.report.csv", duplicates=policy))
        moved_to = box.store.active_workflow(lead)
    got = read_report(tmp_path / "r.report.csv")
    assert [e if e != "pending-ok" else "" for e in expected] == [r["error"] for r in got]
    assert (wf1 if policy == "first" else wf2) == moved_to


def test_duplicates_error_refuses_the_file(tmp_path: Path) -> None:
    """--duplicates error: a repeated lead is a file-level error, exit 2, nothing sent."""
    path, seed, rows = make_migration(tmp_path, 5)
    path.write_text(path.read_text() + f"{rows[0]['lead_id']},{rows[0]['workflow_id']},,\n")
    with start_sandbox(seed) as box:
        result = run_cli(
            "run",
            str(path),
            "--base-url",
            box.url,
            "--duplicates",
            "error",
            env={"NEXOR_API_KEY": box.api_key},
        )
        assert [] == box.store.audit()
    assert 2 == result.returncode
    assert "1 duplicate lead id(s) with --duplicates error: row 6 repeats row 1" in " ".join(
        result.stderr.split()
    )


@pytest.mark.parametrize("headers", [True, False], ids=["announced", "no-headers"])
def test_no_rate_cap_still_keeps_under_the_servers_limit(tmp_path: Path, headers: bool) -> None:
    """--rate 0 is no cap of our own, not a licence to hammer: once the server shows its limit
    (the first answer's X-RateLimit-* headers, or a first 429), the run paces under it. Unpaced,
    every emptied bucket earned a pause and a 429 per request in flight (87-90 429s at 8 in flight);
    with the limit announced, an unpaced first flight still overdrew the bucket (7-9 429s)."""
    path, seed, rows = make_migration(tmp_path, 150)
    report = tmp_path / "r.report.csv"
    with start_sandbox(seed, rate_limit=100, burst=10, headers=headers) as box:
        # More in flight than the server's bucket holds: an unpaced first flight overdraws it.
        summary = run_job(config(box, path, report, rate=0, concurrency=16))
        assert_each_moved_once(box, seed, rows)
        refused = box.settings.stats["status 429"]
    assert summary.statuses == {"succeeded": 100, "unchanged": 50}
    assert summary.rate_limited == refused
    if headers:  # the first answer announces the limit before the pool goes: none expected
        assert refused <= 2
    else:  # the first flight's (one per request in flight: 10-15 here), and a jitter one or two
        assert refused <= 20

"""Operations: job files, the lock, validate --preflight, dry runs, cron logs, secrets, shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import (
    REPO,
    make_migration,
    new_id,
    read_json,
    read_report,
    run_cli,
    start_sandbox,
    write_csv,
)

from batch_assign.errors import LockedError, UsageError
from batch_assign.jobfile import load_job
from batch_assign.lock import RunLock
from batch_assign.planner import ShardCounter, parse_shard, take_shard
from batch_assign.reader import ReadBatch
from batch_assign.sandbox import FaultRule


def key_env(box: object) -> dict[str, str]:
    return {"NEXOR_API_KEY": box.api_key}  # type: ignore[attr-defined]


# --- job files -------------------------------------------------------------------------------


@pytest.mark.parametrize("job", sorted((REPO / "jobs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_job_files_load(job: Path) -> None:
    """Every job file we ship is valid."""
    assert load_job(job)["input"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rates = 5\n", "unknown key 'rates' (did you mean 'rate'?)"),
        ("colour = 'blue'\n", "unknown key 'colour' (known keys: input, report"),
        ("rate = 'fast'\n", "key 'rate' must be a number (requests per second), got 'fast'"),
        ("concurrency = 2.5\n", "key 'concurrency' must be a whole number"),
        ("check_current = 'yes'\n", "key 'check_current' must be true or false"),
        ("concurrency = true\n", "key 'concurrency' must be a whole number"),
        ("[map]\nlead_id = 3\n", "[map] lead_id must be a column name string"),
        ("rate = \n", "not valid TOML"),
    ],
    ids=["typo", "unknown", "type", "int", "bool", "bool-as-int", "map", "syntax"],
)
def test_bad_job_files_name_file_key_and_fix(tmp_path: Path, text: str, message: str) -> None:
    """A bad job file is one clear error naming the file and the key."""
    job = tmp_path / "bad.toml"
    job.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_job(job)
    assert str(job) in str(caught.value)
    assert message in str(caught.value)


def test_missing_job_file_exits_2(tmp_path: Path) -> None:
    """--job naming no file: exit 2 with the path."""
    result = run_cli("run", "--job", str(tmp_path / "nope.toml"))
    assert 2 == result.returncode
    assert "nope.toml: no such job file" in result.stderr


def test_job_file_runs_and_flags_override_it(tmp_path: Path) -> None:
    """Values come from the job file; a flag on the command line wins; paths are job-relative."""
    _path, seed, _rows = make_migration(tmp_path, 12, name="leads.csv")
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "move.toml").write_text(
        'input = "../leads.csv"\nreport = "../out/from-job.report.csv"\nrate = 0\n'
        'concurrency = 2\nreason = "from the job file"\ncheck_current = true\n'
    )
    with start_sandbox(seed) as box:
        result = run_cli(
            "run",
            "--job",
            str(jobs / "move.toml"),
            "--base-url",
            box.url,
            "--report",
            str(tmp_path / "out" / "flag.report.csv"),
            env=key_env(box),
        )
        reasons = {a.reason for a in box.store.audit()}
    assert 0 == result.returncode, result.stderr
    assert (tmp_path / "out" / "flag.report.csv").exists()
    assert not (tmp_path / "out" / "from-job.report.csv").exists()
    assert {"move 0", "move 1"} <= reasons  # the rows' own reasons win over the default
    assert 12 == len(read_report(tmp_path / "out" / "flag.report.csv"))


# --- the lock ----------------------------------------------------------------------------------


def test_overlapping_run_exits_2_at_once(tmp_path: Path) -> None:
    """A second run on the same report while one holds the lock exits 2 and says who holds it."""
    path, seed, _ = make_migration(tmp_path, 3)
    report = tmp_path / "r.report.csv"
    with start_sandbox(seed) as box, RunLock(tmp_path / "r.report.lock"):
        result = run_cli(
            "run", str(path), "--report", str(report), "--base-url", box.url, env=key_env(box)
        )
        audit = box.store.audit()
    assert 2 == result.returncode
    assert f"pid {os.getpid()}" in result.stderr
    assert "another batch-assign run is already using this report" in " ".join(
        result.stderr.split()
    )
    assert [] == audit


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    """A lock left by a killed run does not block the next one."""
    lock_path = tmp_path / "r.report.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from batch_assign.lock import RunLock; import time; RunLock.__enter__(RunLock(__import__('pathlib').Path({str(lock_path)!r}))); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert "held" == holder.stdout.readline().strip()
    with pytest.raises(LockedError):
        RunLock(lock_path).__enter__()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert "pid" in lock_path.read_text()  # the dead holder's note is still there
    with RunLock(lock_path):
        assert f"pid {os.getpid()}" in lock_path.read_text()


def test_runs_of_one_job_never_overlap(tmp_path: Path) -> None:
    """With --job, a second run of the same job is refused even with another report path."""
    job = tmp_path / "nightly.toml"
    path, seed, _ = make_migration(tmp_path, 3)
    job.write_text(f'input = "{path.name}"\n')
    with start_sandbox(seed) as box, RunLock(tmp_path / ".nightly.job.lock"):
        result = run_cli(
            "run",
            "--job",
            str(job),
            "--base-url",
            box.url,
            "--report",
            str(tmp_path / "other.report.csv"),
            env=key_env(box),
        )
    assert 2 == result.returncode
    assert "already using this report" in " ".join(result.stderr.split())


# --- validate and preflight ---------------------------------------------------------------------


def test_preflight_finds_missing_and_paused_workflows(tmp_path: Path) -> None:
    """--preflight lists target workflows that do not exist (exit 1) and warns about paused ones."""
    live, paused, gone = new_id(), new_id(), new_id()
    rows = [
        {"lead_id": new_id(), "workflow_id": live},
        {"lead_id": new_id(), "workflow_id": paused},
        {"lead_id": new_id(), "workflow_id": gone},
        {"lead_id": new_id(), "workflow_id": gone},
    ]
    path = write_csv(tmp_path / "in.csv", rows)
    seed = {
        "workflows": [
            {"id": live, "name": "Live"},
            {"id": paused, "name": "Frozen", "paused": True},
        ],
        "leads": [],
    }
    with start_sandbox(seed) as box:
        result = run_cli(
            "validate", str(path), "--preflight", "--base-url", box.url, env=key_env(box)
        )
        clean = write_csv(tmp_path / "clean.csv", rows[:1])
        ok = run_cli("validate", str(clean), "--preflight", "--base-url", box.url, env=key_env(box))
    assert 1 == result.returncode
    assert f"workflow {gone} (2 rows): does not exist in this account" in result.stdout
    assert f"warning: workflow {paused} ('Frozen', 1 rows) is paused" in result.stdout
    assert 0 == ok.returncode
    assert "preflight: every target workflow exists" in ok.stdout


def test_validate_unusable_file_exits_2(tmp_path: Path) -> None:
    """validate on a file with no lead column: exit 2 and the reason."""
    bad = tmp_path / "bad.csv"
    bad.write_text("name,email\nx,y\n")
    result = run_cli("validate", str(bad))
    assert 2 == result.returncode
    assert "no lead id column" in result.stderr


# --- dry run -------------------------------------------------------------------------------------


def test_dry_run_sends_no_assignment(tmp_path: Path) -> None:
    """--dry-run pre-checks with GETs only and reports what would happen; the audit stays empty."""
    path, seed, rows = make_migration(tmp_path, 30)
    with path.open("a") as handle:
        handle.write(
            f"{new_id()},{rows[0]['workflow_id']},,\nnot-a-lead,{rows[0]['workflow_id']},,\n"
        )
    with start_sandbox(seed) as box:
        result = run_cli(
            "run", str(path), "--dry-run", "--base-url", box.url, "--rate", "0", env=key_env(box)
        )
        assert [] == box.store.audit()
        assert 0 == box.settings.stats["POST assign"]
    assert 1 == result.returncode  # an unknown lead and an invalid row
    report = tmp_path / "input.dry-run.report.csv"
    statuses = Counter(r["status"] for r in read_report(report))
    assert {
        "would_enroll": 10,
        "would_reassign": 10,
        "unchanged": 10,
        "failed": 1,
        "invalid": 1,
    } == dict(statuses)
    summary = read_json(tmp_path / "input.dry-run.report.summary.json")
    assert (True, 10) == (summary["extra"]["dry_run"], summary["statuses"]["would_enroll"])
    assert not (tmp_path / "input.report.journal.sqlite").exists()


# --- what cron sees -------------------------------------------------------------------------------


def test_cron_run_logs_json_events(tmp_path: Path) -> None:
    """Off a terminal: JSON lines with a start event (settings, no key), retries, rate changes,
    failures and a final summary event."""
    path, seed, rows = make_migration(tmp_path, 60)
    unknown = f"{rows[0]['lead_id'][:8]}{new_id()[8:]}"
    with path.open("a") as handle:
        handle.write(f"{unknown},{rows[0]['workflow_id']},,\n")
    rules = (FaultRule("503", rate=0.1, burst=1),)
    with start_sandbox(seed, rules=rules, rate_limit=40, burst=4) as box:
        result = run_cli(
            "run",
            str(path),
            "--base-url",
            box.url,
            "--rate",
            "80",
            "--burst",
            "8",
            env=key_env(box),
        )
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    names = Counter(e["event"] for e in events)
    assert 1 == result.returncode
    assert 1 == names["batch_assign.run_started"]
    assert 1 == names["batch_assign.run_finished"]
    assert names["batch_assign.retry_scheduled"] >= 1
    assert names["batch_assign.rate_changed"] >= 1
    assert 1 == names["batch_assign.row_failed"]
    start = next(e for e in events if e["event"] == "batch_assign.run_started")
    assert (box.url, 80.0, 61) == (start["base_url"], start["rate"], start["rows"])
    assert box.api_key not in result.stderr
    final = next(e for e in events if e["event"] == "batch_assign.run_finished")
    assert (61, 1) == (final["rows"], final["exit_code"])
    assert all("timestamp" in e and "level" in e for e in events)
    leads = dict(enumerate((r["lead_id"] for r in rows), start=1))
    retries = [e for e in events if e["event"] == "batch_assign.retry_scheduled"]
    assert all(leads[e["row"]] == e["lead_id"] for e in retries)  # a retry names its row
    failed = next(e for e in events if e["event"] == "batch_assign.row_failed")
    assert (61, unknown) == (failed["row"], failed["lead_id"])


def test_the_key_appears_nowhere(tmp_path: Path) -> None:
    """Neither the key nor anything shaped like one appears in any output or file of a run, even
    when a failing request's row carries it in its reason."""
    path, seed, rows = make_migration(tmp_path, 20)
    secret = "nxr_live_s3cr3t_DO_NOT_LEAK_0123456789"
    text = path.read_text().replace("move 3", f"oops {secret}")
    path.write_text(text + f"{new_id()},{rows[0]['workflow_id']},{secret},x\n")
    from batch_assign.sandbox import SandboxSettings, serve_in_thread

    settings = SandboxSettings(api_keys=(secret,), rate_limit=0)
    with serve_in_thread(seed=seed, settings=settings) as box:
        result = run_cli(
            "run", str(path), "--base-url", box.url, "--rate", "0", env={"NEXOR_API_KEY": secret}
        )
        bad = run_cli(
            "run",
            str(path),
            "--base-url",
            box.url,
            "--report",
            str(tmp_path / "bad.report.csv"),
            env={"NEXOR_API_KEY": secret + "x"},
        )
    assert 1 == result.returncode, result.stderr
    assert 3 == bad.returncode
    outputs = result.stdout + result.stderr + bad.stdout + bad.stderr
    assert secret not in outputs
    for produced in tmp_path.iterdir():
        if produced.is_file() and "report" in produced.name and "journal" not in produced.name:
            assert secret not in produced.read_text(errors="replace"), produced.name


# --- shards and merge -----------------------------------------------------------------------------


def test_shards_split_100k_rows_disjointly_and_completely() -> None:
    """--shard K/N over 100,000 rows: N disjoint shards whose union is the input, evenly sized."""
    import uuid

    rows = [(i, str(uuid.UUID(int=i * 7919 + 1)), "w", None, None, None) for i in range(1, 100_001)]
    rows[5] = (6, "NOT-A-UUID", "w", None, None, "invalid")
    batches = [ReadBatch(rows[i : i + 10_000]) for i in range(0, 100_000, 10_000)]
    taken = []
    for k in range(4):
        counter = ShardCounter()
        taken.append(
            {
                row[0]
                for batch in take_shard(batches, parse_shard(f"{k}/4"), counter)
                for row in batch.rows
            }
        )
        assert 100_000 == counter.rows
    assert set(range(1, 100_001)) == set().union(*taken)
    assert 100_000 == sum(len(t) for t in taken)
    assert all(23_000 < len(t) < 27_000 for t in taken)


@pytest.mark.parametrize(
    ("text", "message"),
    [("4/4", "must be 0 to N-1"), ("x", "write it as K/N"), ("1/0", "must be 0 to N-1")],
)
def test_bad_shard_values(text: str, message: str) -> None:
    """--shard must be K/N with K from 0 to N-1."""
    with pytest.raises(UsageError, match=message):
        parse_shard(text)


def test_sharded_run_and_merge_round_trip(tmp_path: Path) -> None:
    """Three shard runs move every lead once; merge joins them and refuses incomplete sets."""
    path, seed, _rows = make_migration(tmp_path, 90)
    reports = [tmp_path / f"s{k}.report.csv" for k in range(3)]
    with start_sandbox(seed) as box:
        for k, report in enumerate(reports):
            result = run_cli(
                "run",
                str(path),
                "--shard",
                f"{k}/3",
                "--report",
                str(report),
                "--base-url",
                box.url,
                "--rate",
                "0",
                env=key_env(box),
            )
            assert 0 == result.returncode, result.stderr
        moves = Counter(a.lead_id for a in box.store.audit())
    assert 60 == len(moves)
    assert {1} == set(moves.values())
    merged = tmp_path / "all.report.csv"
    result = run_cli("merge", *map(str, reports), "-o", str(merged))
    assert 0 == result.returncode, result.stderr
    got = read_report(merged)
    assert [str(i) for i in range(1, 91)] == [r["row"] for r in got]
    assert {"succeeded": 60, "unchanged": 30} == dict(Counter(r["status"] for r in got))
    missing = run_cli("merge", *map(str, reports[:2]), "-o", str(tmp_path / "x.report.csv"))
    assert 2 == missing.returncode
    assert "missing shard(s) 2/3" in missing.stderr
    twice = run_cli(
        "merge",
        str(reports[0]),
        str(reports[0]),
        str(reports[1]),
        "-o",
        str(tmp_path / "y.report.csv"),
    )
    assert 2 == twice.returncode
    assert "shard(s) given twice: 0/3" in " ".join(twice.stderr.split())

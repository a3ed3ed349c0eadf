"""Crash safety and resume (G1-G3, G5): kill it anywhere, run it again, nothing lost or doubled."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

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

from batch_assign.sandbox import FaultRule, RunningSandbox


def cli_command(path: Path, report: Path, box: RunningSandbox, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "batch_assign",
        *run_args(path, report, box, "--log-format", "json", *extra),
    ]


def cli_env(box: RunningSandbox) -> dict[str, str]:
    return {**os.environ, "NEXOR_API_KEY": box.api_key}


def start(path: Path, report: Path, box: RunningSandbox, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_command(path, report, box, *extra),
        env=cli_env(box),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def moves_per_lead(box: RunningSandbox) -> Counter[str]:
    return Counter(entry.lead_id for entry in box.store.audit())


def assert_exactly_once(
    box: RunningSandbox,
    seed: dict[str, Any],
    rows: list[dict[str, str]],
    *,
    in_place: tuple[int, ...] = (0,),
) -> None:
    """Every lead not already in its target moved exactly once; the others as many times as
    `in_place` allows (never, with the pre-check)."""
    current = {lead["id"]: lead.get("workflow_id") for lead in seed["leads"]}
    moves = moves_per_lead(box)
    doubled = [row["lead_id"] for row in rows if moves[row["lead_id"]] > 1]
    assert [] == doubled
    for row in rows:
        allowed = in_place if current[row["lead_id"]] == row["workflow_id"] else (1,)
        assert moves[row["lead_id"]] in allowed, row
        assert row["workflow_id"] == box.store.active_workflow(row["lead_id"])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("check_current", [True, False])
def test_chaos_sigkill_at_random_moments(tmp_path: Path, check_current: bool) -> None:
    """20+ SIGKILLs at random instants, then the same command until it exits: every row once, no
    lead moved twice, nothing left uncertain (the sandbox stays reachable for verification).

    Without the pre-check, intents are committed ahead of the rows in flight: a row killed before
    it was sent is verified on resume, so a lead already in its target may then not be resent."""
    path, seed, rows = make_migration(tmp_path, 3_000)
    flags = () if check_current else ("--no-check-current",)
    report = tmp_path / "chaos.report.csv"
    rules = (FaultRule("500-after", rate=0.05), FaultRule("drop-after", rate=0.05))
    rng = random.Random(20261204)
    kills, runs = 0, 0
    deadline = time.monotonic() + 240
    with start_sandbox(seed, rules=rules, latency_ms=2, fault_seed=3) as box:
        box.settings.faults.jitter_ms = 6
        while kills < 22 and time.monotonic() < deadline:
            proc = start(path, report, box, "--concurrency", "8", "--rate", "400", *flags)
            runs += 1
            try:
                proc.wait(timeout=rng.uniform(0.3, 1.6))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                kills += 1
            else:
                assert proc.returncode in (0, 1), proc.stderr.read() if proc.stderr else ""
                assert proc.stderr is not None
                assert "Traceback" not in proc.stderr.read()
        final = None
        while time.monotonic() < deadline:
            final = run_cli(
                *cli_command(path, report, box, *flags)[3:], env={"NEXOR_API_KEY": box.api_key}
            )
            if final.returncode in (0, 1):
                break
        assert final is not None
        assert 0 == final.returncode, final.stderr[-2000:]
        assert kills >= 20
        assert_exactly_once(box, seed, rows, in_place=(0,) if check_current else (0, 1))
        injected = sum(box.settings.faults.injected.values())
    got = read_report(report)
    assert [str(i) for i in range(1, 3_001)] == [r["row"] for r in got]
    expected = {"succeeded": 2_000, "unchanged": 1_000} if check_current else {"succeeded": 3_000}
    assert expected == dict(Counter(r["status"] for r in got))
    summary = read_json(tmp_path / "chaos.report.summary.json")
    assert 0 == summary["statuses"].get("uncertain", 0)
    assert summary["extra"]["sessions"] >= 2
    assert injected > 0


def _interrupt(tmp_path: Path, sig: int, expected_exit: int, *flags: str) -> None:
    path, seed, rows = make_migration(tmp_path, 300)
    report = tmp_path / "sig.report.csv"
    with start_sandbox(seed, latency_ms=60) as box:
        proc = start(path, report, box, "--concurrency", "4", *flags)
        time.sleep(2.0)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
        assert expected_exit == proc.returncode, stderr[-2000:]
        got = read_report(report)
        statuses = Counter(r["status"] for r in got)
        assert 300 == len(got)
        assert statuses["pending"] > 0
        assert 0 == statuses["uncertain"]  # in-flight requests finished within the grace period
        assert set(statuses) <= {"succeeded", "unchanged", "pending"}
        summary = read_json(tmp_path / "sig.report.summary.json")
        assert summary["stop_reason"].startswith("interrupted by")
        resumed = run_cli(
            *cli_command(path, report, box, *flags)[3:], env={"NEXOR_API_KEY": box.api_key}
        )
        assert 0 == resumed.returncode, resumed.stderr[-2000:]
        assert "resuming:" in resumed.stderr
        assert_exactly_once(box, seed, rows, in_place=(1,) if flags else (0,))


def test_sigterm_finishes_in_flight_then_exits_143(tmp_path: Path) -> None:
    """SIGTERM: no new rows, in-flight requests finish, report written with the rest pending, 143.
    Without the pre-check (intents committed ahead), the rows never sent are pending too."""
    _interrupt(tmp_path, signal.SIGTERM, 143, "--no-check-current")


def test_sigint_finishes_in_flight_then_exits_130(tmp_path: Path) -> None:
    """SIGINT: the same, exit 130; running again finishes the job."""
    _interrupt(tmp_path, signal.SIGINT, 130)


def _stuck_run(
    tmp_path: Path, *extra: str
) -> tuple[Path, Path, dict[str, Any], list[dict[str, str]], Any]:
    path, seed, rows = make_migration(tmp_path, 6)
    moving = [r["lead_id"] for i, r in enumerate(rows) if i % 3 != 2]
    rule = FaultRule("slow-after", lead_ids=frozenset(moving), times=1, delay_s=30)
    return path, tmp_path / "stuck.report.csv", seed, rows, start_sandbox(seed, rules=(rule,))


def test_grace_period_bounds_the_wait_and_resume_verifies(tmp_path: Path) -> None:
    """Requests still in flight when --grace runs out are left in doubt, reported as uncertain
    with what to do, and verified (not resent) by the next run that can read the leads back."""
    path, report, seed, rows, sandbox_cm = _stuck_run(tmp_path)
    with sandbox_cm as box:
        proc = start(path, report, box, "--grace", "1", "--timeout", "60")
        time.sleep(2.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert 143 == proc.returncode
        assert time.monotonic() - started < 10
        got = read_report(report)
        in_doubt = [r for r in got if r["status"] == "uncertain"]
        assert 4 == len(in_doubt)
        assert "run the same command again to verify it" in in_doubt[0]["error"]
        # A resume during an outage cannot read the leads back: they stay in doubt, not given up
        # on as uncertain, and are neither resent nor settled.
        box.settings.faults.rules = (FaultRule("503", rate=1.0, burst=1),)
        outage = run_cli(
            *cli_command(path, report, box, "--max-attempts", "1")[3:],
            env={"NEXOR_API_KEY": box.api_key},
        )
        assert 1 == outage.returncode, outage.stderr[-2000:]
        assert "batch_assign.verify_failed" in outage.stderr
        after_outage = {r["lead_id"]: r for r in read_report(report)}
        for row in in_doubt:
            assert (
                "run the same command again to verify it" in after_outage[row["lead_id"]]["error"]
            )
        assert 4 == box.settings.stats["POST assign"]
        box.settings.faults.rules = ()
        resumed = run_cli(*cli_command(path, report, box)[3:], env={"NEXOR_API_KEY": box.api_key})
        assert 0 == resumed.returncode, resumed.stderr[-2000:]
        assert_exactly_once(box, seed, rows)
        assert 4 == box.settings.stats["POST assign"]  # verified through GET, never resent
    final = {r["lead_id"]: r for r in read_report(report)}
    assert all("verified applied" in final[r["lead_id"]]["error"] for r in in_doubt)


def test_second_sigint_stops_at_once(tmp_path: Path) -> None:
    """A second SIGINT does not wait for the grace period."""
    path, report, _, _, sandbox_cm = _stuck_run(tmp_path)
    with sandbox_cm as box:
        proc = start(path, report, box, "--grace", "60", "--timeout", "60")
        time.sleep(2.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert 130 == proc.returncode
    assert time.monotonic() - started < 10
    assert 6 == len(read_report(report))


def _one_workflow_seed(workflow: str, count: int) -> tuple[list[str], dict[str, Any]]:
    """`count` new leads and a sandbox seed with them and one workflow."""
    leads = [new_id() for _ in range(count)]
    seed = {
        "workflows": [{"id": workflow, "name": "T"}],
        "leads": [{"id": lead, "first_name": "x"} for lead in leads],
    }
    return leads, seed


def test_max_failures_aborts_with_exit_3(tmp_path: Path) -> None:
    """--max-failures N stops the run once more than N rows failed; the rest stay pending."""
    wf = new_id()
    leads, seed = _one_workflow_seed(wf, 40)
    rows = [{"lead_id": lead, "workflow_id": new_id()} for lead in leads]  # unknown workflows: 404
    path = write_csv(tmp_path / "bad.csv", rows)
    with start_sandbox(seed) as box:
        result = run_cli(
            *cli_command(path, tmp_path / "bad.report.csv", box)[3:],
            "--concurrency",
            "1",
            "--max-failures",
            "3",
            env={"NEXOR_API_KEY": box.api_key},
        )
    assert 3 == result.returncode
    assert "4 rows failed, more than --max-failures 3" in " ".join(result.stdout.split())
    statuses = Counter(r["status"] for r in read_report(tmp_path / "bad.report.csv"))
    assert {"failed": 4, "pending": 36} == dict(statuses)


def test_max_failure_rate_aborts_after_the_sample(tmp_path: Path) -> None:
    """--max-failure-rate F is judged after 50 settled rows and stops the run with exit 3."""
    wf = new_id()
    leads, seed = _one_workflow_seed(wf, 200)
    rows = [
        {"lead_id": lead, "workflow_id": wf if i % 2 else new_id()} for i, lead in enumerate(leads)
    ]
    path = write_csv(tmp_path / "half.csv", rows)
    with start_sandbox(seed) as box:
        result = run_cli(
            *cli_command(path, tmp_path / "half.report.csv", box)[3:],
            "--concurrency",
            "1",
            "--max-failure-rate",
            "0.3",
            env={"NEXOR_API_KEY": box.api_key},
        )
    assert 3 == result.returncode
    assert "above --max-failure-rate 0.3" in " ".join(result.stdout.split())
    statuses = Counter(r["status"] for r in read_report(tmp_path / "half.report.csv"))
    assert 50 == statuses["failed"] + statuses["succeeded"]
    assert 150 == statuses["pending"]


def test_restart_still_leaves_leads_in_place_alone(tmp_path: Path) -> None:
    """--restart starts a new journal, and the pre-check still keeps moved leads unchanged (G4)."""
    path, seed, rows = make_migration(tmp_path, 30)
    report = tmp_path / "r.report.csv"
    env = {"NEXOR_API_KEY": ""}
    with start_sandbox(seed) as box:
        env["NEXOR_API_KEY"] = box.api_key
        assert 0 == run_cli(*cli_command(path, report, box)[3:], env=env).returncode
        path.write_text(path.read_text().replace("move ", "moving "))
        refused = run_cli(*cli_command(path, report, box)[3:], env=env)
        assert 2 == refused.returncode
        message = " ".join(refused.stderr.split())
        assert "changed since this run started" in message
        assert "--restart" in message
        restarted = run_cli(*cli_command(path, report, box)[3:], "--restart", env=env)
        assert 0 == restarted.returncode, restarted.stderr
        assert_exactly_once(box, seed, rows)
    assert {"unchanged": 30} == dict(Counter(r["status"] for r in read_report(report)))


def test_rollback_moves_succeeded_leads_back(tmp_path: Path) -> None:
    """rollback writes an input that returns reassigned leads; enrolled ones are listed apart."""
    path, seed, _rows = make_migration(tmp_path, 30)
    report = tmp_path / "r.report.csv"
    with start_sandbox(seed) as box:
        env = {"NEXOR_API_KEY": box.api_key}
        assert 0 == run_cli(*cli_command(path, report, box)[3:], env=env).returncode
        result = run_cli("rollback", str(report))
        assert 0 == result.returncode, result.stderr
        back = read_report(tmp_path / "r.report.rollback.csv")
        skipped = read_report(tmp_path / "r.report.rollback.not-reversible.csv")
        assert (10, 10) == (len(back), len(skipped))
        assert back[0]["reason"].startswith("rollback of r.report.csv row ")
        assert {"enrolled by the run: the API cannot un-enroll a lead"} == {
            s["why"] for s in skipped
        }
        undo = run_cli(
            *cli_command(tmp_path / "r.report.rollback.csv", tmp_path / "undo.report.csv", box)[3:],
            env=env,
        )
        assert 0 == undo.returncode, undo.stderr
        original = {lead["id"]: lead.get("workflow_id") for lead in seed["leads"]}
        for row in back:
            assert original[row["lead_id"]] == box.store.active_workflow(row["lead_id"])

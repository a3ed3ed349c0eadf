"""The command line as a user meets it: help, version, exit codes and exact error messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import make_migration, read_report, run_cli, start_sandbox

from batch_assign import __version__

COMMANDS = ["run", "validate", "sandbox", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    """`batch-assign COMMAND --help` explains the command and exits 0."""
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "Usage: " in result.stdout


def test_version() -> None:
    """--version prints the installed version."""
    result = run_cli("--version")
    assert (0, f"batch-assign, version {__version__}") == (result.returncode, result.stdout.strip())


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["run", "missing.csv"], {"NEXOR_API_KEY": "nxr_live_x"}, "missing.csv: no such file"),
        (["run", "{input}"], {}, "no API key: set NEXOR_API_KEY or pass --api-key-file PATH"),
        (
            ["run", "{input}", "--base-url", "http://api.example.com/api/public"],
            {"NEXOR_API_KEY": "nxr_live_x"},
            "refusing to send the API key over plain http to api.example.com",
        ),
        (
            ["run", "{input}", "--report", "out.xlsx"],
            {"NEXOR_API_KEY": "nxr_live_x"},
            "unknown format '.xlsx'",
        ),
        (
            ["run", "{input}", "--map", "lead=x"],
            {"NEXOR_API_KEY": "nxr_live_x"},
            "--map lead=…: the field must be one of",
        ),
        (
            ["run", "{input}", "--max-failure-rate", "20"],
            {"NEXOR_API_KEY": "nxr_live_x"},
            "--max-failure-rate is a fraction",
        ),
        (
            ["run", "{input}", "--api-key-file", "nope.key"],
            {},
            "--api-key-file nope.key: cannot read it",
        ),
        (
            ["validate", "{input}", "--map", "lead_id=nope"],
            {},
            "--map lead_id=nope: no such column",
        ),
        (
            ["run", "{input}"],
            {"NEXOR_API_KEY": "nxr_live_s\u00e9cret"},
            "$NEXOR_API_KEY has a character an API key cannot have (non-ASCII or a control "
            "character, at position 11 of 15)",
        ),
        (
            ["run", "{input}", "--reason", "moved\udcff"],  # a byte the terminal could not decode
            {"NEXOR_API_KEY": "nxr_live_x"},
            "--reason is not valid UTF-8 (an undecodable byte at character 6)",
        ),
        (
            ["run", "{input}", "--burst", "0"],
            {"NEXOR_API_KEY": "nxr_live_x"},
            "--burst must be at least 1 (1 = evenly spaced), got 0",
        ),
    ],
    ids=[
        "missing-file",
        "no-key",
        "plain-http",
        "bad-report",
        "bad-map",
        "bad-rate",
        "missing-key-file",
        "bad-column",
        "non-ascii-key",
        "undecodable-flag",
        "bad-burst",
    ],
)
def test_usage_errors_exit_2_with_one_clear_line(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    """Usage and file-level errors: exit 2, one line saying what and how to fix, no traceback."""
    path, _, _ = make_migration(tmp_path, 3)
    args = [a.replace("{input}", str(path)) for a in args]
    result = run_cli(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_a_key_file_that_is_not_text_is_a_usage_error(tmp_path: Path) -> None:
    """A binary --api-key-file is named and refused; its bytes are never shown."""
    path, _, _ = make_migration(tmp_path, 3)
    key_file = tmp_path / "key.bin"
    key_file.write_bytes(b"nxr_live_\xff\xfe\n")
    key_file.chmod(0o600)
    result = run_cli("run", str(path), "--api-key-file", str(key_file))
    assert result.returncode == 2, result.stderr
    assert f"--api-key-file {key_file} is not text (not UTF-8)" in result.stderr
    assert "Traceback" not in result.stderr
    assert "nxr_live" not in result.stderr


def test_key_file_is_used_and_never_printed(tmp_path: Path) -> None:
    """--api-key-file supplies the key; it appears in no output and no file of the run."""
    path, seed, _ = make_migration(tmp_path, 6)
    key_file = tmp_path / "nexor.key"
    with start_sandbox(seed) as box:
        key_file.write_text(box.api_key + "\n")
        key_file.chmod(0o600)
        result = run_cli(
            "run", str(path), "--base-url", box.url, "--api-key-file", str(key_file), "--rate", "0"
        )
    assert result.returncode == 0, result.stderr
    for produced in tmp_path.glob("input.report*"):
        if produced.suffix != ".sqlite":
            assert box.api_key not in produced.read_text()
    assert box.api_key not in result.stdout + result.stderr


def test_validate_exit_codes(tmp_path: Path) -> None:
    """validate: 0 on a clean file, 1 with invalid or repeated rows (listed with row numbers)."""
    clean, _, rows = make_migration(tmp_path, 5)
    assert run_cli("validate", str(clean)).returncode == 0
    dirty = tmp_path / "dirty.csv"
    dirty.write_text(
        clean.read_text()
        + f"LEAD-9,{rows[0]['workflow_id']},,\n{rows[0]['lead_id']},{rows[0]['workflow_id']},,\n"
    )
    result = run_cli("validate", str(dirty))
    assert result.returncode == 1
    assert "7 rows: 5 ready to send, 1 invalid, 1 duplicate" in result.stdout
    assert "row 6: invalid: column 'lead_id': 'LEAD-9' is not a valid UUID" in result.stdout
    assert "row 7: duplicate: lead already in row 1" in result.stdout


def test_demo_runs_with_no_key(tmp_path: Path) -> None:
    """`batch-assign demo` runs the sample job against an embedded sandbox and exits 0."""
    env = {"PATH": os.environ["PATH"]}
    result = subprocess.run(
        [sys.executable, "-m", "batch_assign", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "batch-assign summary" in result.stdout
    rows = read_report(tmp_path / "demo" / "sample.report.csv")
    assert len(rows) == 300
    assert {"succeeded", "unchanged", "invalid", "duplicate", "failed"} == {
        r["status"] for r in rows
    }


def test_sandbox_command_serves_until_stopped(tmp_path: Path) -> None:
    """`batch-assign sandbox --port 0 --sample` prints its URL and key, serves, and stops on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch_assign", "sandbox", "--port", "0", "--sample"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        key = proc.stdout.readline().strip().removeprefix("API key: ")
        assert first.startswith("Nexor sandbox listening on http://127.0.0.1:")
        url = first.rsplit(" ", 1)[1]
        response = httpx.get(url + "/workflows", headers={"X-API-Key": key}, timeout=10)
        assert (response.status_code, response.json()["total"]) == (200, 5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_concurrency_auto_and_bad_values(tmp_path: Path) -> None:
    """--concurrency auto runs the job; anything but a number or 'auto' is a usage error."""
    path, seed, _ = make_migration(tmp_path, 20)
    with start_sandbox(seed) as box:
        env = {"NEXOR_API_KEY": box.api_key}
        auto = run_cli(
            "run",
            str(path),
            "--base-url",
            box.url,
            "--concurrency",
            "auto",
            "--rate",
            "100",
            env=env,
        )
        bad = run_cli("run", str(path), "--base-url", box.url, "--concurrency", "lots", env=env)
    assert 0 == auto.returncode, auto.stderr
    assert 2 == bad.returncode
    assert "--concurrency must be a whole number or 'auto', got 'lots'" in bad.stderr

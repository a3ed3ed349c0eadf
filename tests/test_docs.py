"""README's examples work as written: every `batch-assign ... --sandbox` command in it runs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

README = (REPO / "README.md").read_text()
SH_BLOCKS = re.findall(r"^```sh\n(.*?)^```", README, re.M | re.S)
EXAMPLES = [
    line
    for block in SH_BLOCKS
    for line in block.splitlines()
    if line.startswith("batch-assign ") and "--sandbox" in line
]


def test_readme_has_runnable_examples() -> None:
    """The dry-run and job-file sections show commands a newcomer can run as they are."""
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("command", EXAMPLES)
def test_readme_example_runs(tmp_path: Path, command: str) -> None:
    """The command runs from a copy of the repo's layout and finishes with exit 0 or 1."""
    for folder in ("jobs", "sample_data"):
        (tmp_path / folder).symlink_to(REPO / folder)
    args = shlex.split(command)[1:]
    result = subprocess.run(
        [sys.executable, "-m", "batch_assign", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "NEXOR_API_KEY"},
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]  # the sample has broken rows
    assert "batch-assign summary" in result.stdout


def test_crontab_line_uses_real_options() -> None:
    """The crontab line's job file loads and its flags exist."""
    from batch_assign.jobfile import load_job

    line = next(line for line in README.splitlines() if line.startswith("15 2 * * *"))
    assert "--job jobs/nightly-cron.toml" in line
    load_job(REPO / "jobs" / "nightly-cron.toml")
    help_text = subprocess.run(
        [sys.executable, "-m", "batch_assign", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in re.findall(r"(--[a-z-]+)", line):
        assert flag in help_text

"""Run `batch-assign run` against a URL and return its summary (used by the bench scripts)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path
from typing import Any

from _common import KEY, run_command


def run_batch_assign(
    data: Path, report: Path, url: str, *flags: str
) -> tuple[dict[str, Any], float]:
    """The run's summary JSON and the CPU seconds (user + system) it used."""
    summary_path = report.with_name(report.stem + ".summary.json")
    summary_path.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        run_command(data, report, url, *flags),
        env={**os.environ, "NEXOR_API_KEY": KEY},
        capture_output=True,
        text=True,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if proc.returncode not in (0, 1) or not summary_path.exists():
        raise SystemExit(f"batch-assign exited {proc.returncode}: {proc.stderr[-1500:]}")
    return json.loads(summary_path.read_text()), cpu_s

"""Helpers shared by the bench scripts: start the bench server, make inputs, time children."""

from __future__ import annotations

import compileall
import importlib.util
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEY = "nxr_live_bench"
WORKFLOW = "6a1f0c1e-58d1-4a36-9a4e-0f4f2d4d8b11"


def _compile_package() -> None:
    """Byte-compile batch_assign once, as `pip install` does for a wheel.

    An editable install is compiled on first import, unless PYTHONDONTWRITEBYTECODE is set (as on
    some CI machines): then every timed run would compile it again, ~60 ms that no user pays.
    """
    spec = importlib.util.find_spec("batch_assign")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            compileall.compile_dir(location, quiet=1)


_compile_package()


@contextmanager
def bench_server(*args: str) -> Iterator[str]:
    """Start bench/_server.py in its own process; yield its base URL."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_server.py"), *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip().rsplit(" ", 1)[1]
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def sandbox_process(seed: Path, *extra: str) -> Iterator[str]:
    """Start `batch-assign sandbox` (rate limit off) seeded from `seed`; yield its base URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batch_assign",
            "sandbox",
            "--port",
            "0",
            "--rate-limit",
            "0",
            "--seed",
            str(seed),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip().rsplit(" ", 1)[1]
    finally:
        proc.terminate()
        proc.wait(10)


def run_command(data: Path, report: Path, url: str, *flags: str) -> list[str]:
    """The `batch-assign run` command line the benchmarks use (fresh journal, JSON logs)."""
    return [
        sys.executable,
        "-m",
        "batch_assign",
        "run",
        str(data),
        "--report",
        str(report),
        "--base-url",
        url,
        "--log-format",
        "json",
        "--no-progress",
        "--restart",
        *flags,
    ]


def make_input(path: Path, rows: int) -> Path:
    """`rows` distinct leads, all to one workflow."""
    if not path.exists():
        with path.open("w") as handle:
            handle.write("lead_id,workflow_id\n")
            for i in range(rows):
                handle.write(f"{uuid.UUID(int=i + 1)},{WORKFLOW}\n")
    return path


@dataclass(frozen=True)
class Timing:
    seconds: float
    cpu_s: float
    exit_code: int
    peak_rss_mb: float


_WRAPPER = (
    "import resource, subprocess, sys, json; "
    "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(json.dumps([u.ru_utime + u.ru_stime, u.ru_maxrss, p.returncode]))"
)


def timed(command: list[str], env: dict[str, str] | None = None) -> Timing:
    """Wall time, CPU seconds (user + system) and peak RSS of one command and its children."""
    import json

    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *command],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    elapsed = time.perf_counter() - started
    cpu, rss_kb, code = json.loads(out.stdout)
    return Timing(elapsed, cpu, code, rss_kb / 1024)

"""Peak memory (RSS) of `batch-assign validate` (and `run`, with --run) by input size.

    python bench/memory.py                                  # validate at 50k and 5M rows, run at 50k
    python bench/memory.py --rows 1000000 --run-rows 1000000
    python bench/memory.py --rows 50000 --run-rows --wide-rows 300000   # 100 unused columns

Input files are generated once into --data (default: a folder under the system temp dir) with
`sample_data/generate.py`'s shape. Each measurement is a fresh process; its peak RSS comes from
the kernel (`ru_maxrss` of the child).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from batch_assign.sample import write_sample  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import KEY, bench_server  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

_EXTRA_COLUMNS = 100

_WRAPPER = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)"
)


def measure(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, exit code) of one command, run under its own parent process."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *command],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    elapsed = time.perf_counter() - started
    peak_kb, code = out.stdout.split()
    return int(peak_kb) / 1024, elapsed, int(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 5_000_000])
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "batch-assign-bench"
    )
    parser.add_argument(
        "--run-rows",
        type=int,
        nargs="*",
        default=[50_000],
        help="also measure `run` against bench/_server.py at these sizes",
    )
    parser.add_argument(
        "--wide-rows",
        type=int,
        nargs="*",
        default=[],
        help=f"also `validate` the sample with {_EXTRA_COLUMNS} unused text columns at these sizes",
    )
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    print(f"{'command':<10} {'rows':>10} {'peak RSS MB':>12} {'seconds':>8} {'exit':>5}")
    for rows in sorted(args.rows):
        path = sample(args.data, rows)
        peak, elapsed, code = measure(
            [sys.executable, "-m", "batch_assign", "validate", str(path)], dict(os.environ)
        )
        print(f"{'validate':<10} {rows:>10,} {peak:>12.0f} {elapsed:>8.1f} {code:>5}", flush=True)
    for rows in sorted(args.wide_rows):
        path = wide_sample(args.data, rows)
        peak, elapsed, code = measure(
            [sys.executable, "-m", "batch_assign", "validate", str(path)], dict(os.environ)
        )
        print(f"{'wide':<10} {rows:>10,} {peak:>12.0f} {elapsed:>8.1f} {code:>5}", flush=True)
    for rows in sorted(args.run_rows):
        path = sample(args.data, rows)
        with bench_server() as url:
            command = [
                sys.executable,
                "-m",
                "batch_assign",
                "run",
                str(path),
                "--base-url",
                url,
                "--report",
                str(args.data / f"run-{rows}.report.csv"),
                "--rate",
                "0",
                "--concurrency",
                "32",
                "--restart",
                "--log-format",
                "json",
                "--no-progress",
            ]
            peak, elapsed, code = measure(command, {**os.environ, "NEXOR_API_KEY": KEY})
        print(f"{'run':<10} {rows:>10,} {peak:>12.0f} {elapsed:>8.1f} {code:>5}", flush=True)


def sample(folder: Path, rows: int) -> Path:
    path = folder / f"sample-{rows}.csv"
    if not path.exists():
        write_sample(rows, path)
    return path


def wide_sample(folder: Path, rows: int) -> Path:
    """The sample with unused text columns: a CRM export, every column parsed to find rows with
    extra fields."""
    path = folder / f"wide-{rows}.csv"
    if not path.exists():
        import polars as pl

        frame = pl.read_csv(sample(folder, rows), infer_schema=False)
        extra = [
            pl.lit(f"value {i} of a wide export").alias(f"extra_{i}") for i in range(_EXTRA_COLUMNS)
        ]
        frame.with_columns(extra).write_csv(path)
    return path


if __name__ == "__main__":
    main()

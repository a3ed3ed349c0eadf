"""Latency hiding: rows/s when every answer takes 100 ms.

    python bench/latency.py [--latency-ms 100]

  --concurrency 64, no rate limit: should reach >= 0.9 x 640 rows/s (64 in flight / 0.1 s)
  --concurrency auto, --rate 200: should reach >= 0.9 x 200 rows/s
Rows/s is counted over the dispatch phase (the summary's dispatch_s), without start-up.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import bench_server, make_input
from _run import run_batch_assign


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=100.0)
    args = parser.parse_args()
    per_request = args.latency_ms / 1000
    scenarios = [
        ("--concurrency 64", ["--concurrency", "64", "--rate", "0"], 6_400, 64 / per_request),
        ("--concurrency auto --rate 200", ["--concurrency", "auto", "--rate", "200"], 3_000, 200.0),
    ]
    print(f"{'scenario':<32} {'rows':>6} {'rows/s':>8} {'ideal':>7} {'ratio':>6}")
    with (
        tempfile.TemporaryDirectory() as scratch,
        bench_server("--latency-ms", str(args.latency_ms)) as url,
    ):
        for name, flags, rows, ideal in scenarios:
            data = make_input(Path(scratch) / f"in{rows}.csv", rows)
            summary, _ = run_batch_assign(
                data, Path(scratch) / "r.report.csv", url, "--no-check-current", *flags
            )
            rate = rows / summary["extra"]["dispatch_s"]
            print(f"{name:<32} {rows:>6} {rate:>8.1f} {ideal:>7.0f} {rate / ideal:>6.2f}")


if __name__ == "__main__":
    main()

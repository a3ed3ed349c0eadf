"""Rate fidelity: achieved rate / --rate, and 429s, when the server enforces a limit.

    python bench/rate.py [--rate 100] [--rows 1500]

Scenarios (one run each, same machine, same minimal server):
  server limit = --rate, burst 1 and burst 10: achieved / target should be >= 0.95, 429s < 0.5 %
  server limit = --rate / 2 (burst 10): every row must finish, no failed rows, at >= 0.85 x the
  server's limit; once with X-RateLimit-* headers and once without (the limiter must learn it).
  The server answers 429 with a whole-second Retry-After, as the sandbox does.

--loaded repeats the burst-1 scenario while one busy-looping process per core competes for the
CPU (killed when the scenario ends): the millisecond hiccups a shared machine adds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from _common import bench_server, make_input
from _run import run_batch_assign


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--rows", type=int, default=1_500)
    parser.add_argument("--loaded", action="store_true", help="add a burst-1 run on a busy CPU")
    args = parser.parse_args()
    scenarios: list[tuple[str, float, int, bool, tuple[str, ...]]] = [
        ("limit = rate, burst 1", args.rate, 1, False, ()),
        ("limit = rate, burst 10", args.rate, 10, False, ()),
        ("limit = rate / 2", args.rate / 2, 10, False, ()),
        ("rate / 2, no headers", args.rate / 2, 10, False, ("--no-rate-headers",)),
    ]
    if args.loaded:
        scenarios.append(("burst 1, CPU busy", args.rate, 1, True, ()))
    print(
        f"{'scenario':<24} {'server':>7} {'--rate':>7} {'achieved':>9} {'/target':>8} {'/server':>8} {'429s':>6} {'429 %':>6} {'failed':>6}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        data = make_input(Path(scratch) / "in.csv", args.rows)
        for name, limit, burst, loaded, server_flags in scenarios:
            with (
                busy_cpus() if loaded else nullcontext(),
                bench_server(
                    "--rate-limit", str(limit), "--burst", str(burst), *server_flags
                ) as url,
            ):
                summary, _ = run_batch_assign(
                    data,
                    Path(scratch) / "r.report.csv",
                    url,
                    "--rate",
                    str(args.rate),
                    "--concurrency",
                    "16",
                    "--no-check-current",
                )
            achieved = summary["statuses"].get("succeeded", 0) / summary["extra"]["dispatch_s"]
            requests = summary["requests"]
            print(
                f"{name:<24} {limit:>7.0f} {args.rate:>7.0f} {achieved:>9.1f} {achieved / args.rate:>8.2f} "
                f"{achieved / limit:>8.2f} {summary['rate_limited']:>6} {100 * summary['rate_limited'] / max(requests, 1):>6.2f} "
                f"{summary['statuses'].get('failed', 0):>6}"
            )


@contextmanager
def busy_cpus() -> Iterator[None]:
    """One busy-looping process per core for the duration of the block."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


if __name__ == "__main__":
    main()

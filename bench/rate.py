"""Rate fidelity: achieved rate / --rate, and 429s, when the server enforces a limit.

    python bench/rate.py [--rate 100] [--rows 1500]

Scenarios (one run each, same machine, same minimal server):
  server limit = --rate, burst 1 and burst 10: achieved / target should be >= 0.95, 429s < 0.5 %
  server limit = --rate / 2 (burst 10): every row must finish, no failed rows, at >= 0.85 x the
  server's limit; once with X-RateLimit-* headers and once without (the limiter must learn it).
  no --rate (`--rate 0`) against a server limited to --rate (burst 10), with and without headers:
  the server's limit is all that paces the run.
  no --rate against a server announcing its limit per minute (X-RateLimit-Limit 60 x the rate):
  the limiter must stop trusting that number and learn the limit from 429s.
  The server answers 429 with a whole-second Retry-After, as the sandbox does, except in "bare
  429s" (server at half, no headers, no Retry-After): the limiter's own backoff sets the pauses.
  CPU s is the client's CPU time for the run, pacing included.

Last, two peers against the burst-1 server: a punctual hand-written script (one request at a time
at 97 % of the rate, each spun to its slot, Retry-After honoured), and the same script pacing from
answers too, as our limiter does once a server's bucket shows it holds one request.

--loaded repeats the burst-1 scenario while one busy-looping process per core competes for the
CPU (killed when the scenario ends): the millisecond hiccups a shared machine adds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from _common import HERE, bench_server, make_input
from _run import run_batch_assign


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--rows", type=int, default=1_500)
    parser.add_argument("--loaded", action="store_true", help="add a burst-1 run on a busy CPU")
    args = parser.parse_args()
    no_headers = ("--no-rate-headers",)
    per_minute = ("--announce-limit", str(int(args.rate * 60)))
    bare = (*no_headers, "--no-retry-after")
    # (name, server limit, server burst, CPU busy, server flags, our --rate)
    scenarios: list[tuple[str, float, int, bool, tuple[str, ...], float]] = [
        ("limit = rate, burst 1", args.rate, 1, False, (), args.rate),
        ("limit = rate, burst 10", args.rate, 10, False, (), args.rate),
        ("limit = rate / 2", args.rate / 2, 10, False, (), args.rate),
        ("rate / 2, no headers", args.rate / 2, 10, False, no_headers, args.rate),
        ("rate / 2, bare 429s", args.rate / 2, 10, False, bare, args.rate),
        ("no --rate", args.rate, 10, False, (), 0.0),
        ("no --rate, no headers", args.rate, 10, False, no_headers, 0.0),
        ("no --rate, per minute", args.rate, 10, False, per_minute, 0.0),
    ]
    if args.loaded:
        scenarios.append(("burst 1, CPU busy", args.rate, 1, True, (), args.rate))
    print(
        f"{'scenario':<24} {'server':>7} {'--rate':>7} {'achieved':>9} {'/target':>8} {'/server':>8} {'429s':>6} {'429 %':>6} {'failed':>6} {'CPU s':>6}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        data = make_input(Path(scratch) / "in.csv", args.rows)
        for name, limit, burst, loaded, server_flags, rate in scenarios:
            with (
                busy_cpus() if loaded else nullcontext(),
                bench_server(
                    "--rate-limit", str(limit), "--burst", str(burst), *server_flags
                ) as url,
            ):
                summary, cpu_s = run_batch_assign(
                    data,
                    Path(scratch) / "r.report.csv",
                    url,
                    "--rate",
                    str(rate),
                    "--concurrency",
                    "16",
                    "--no-check-current",
                )
            achieved = summary["statuses"].get("succeeded", 0) / summary["extra"]["dispatch_s"]
            requests = summary["requests"]
            of_target = f"{achieved / rate:>8.2f}" if rate else f"{'-':>8}"
            print(
                f"{name:<24} {limit:>7.0f} {rate:>7.0f} {achieved:>9.1f} {of_target} "
                f"{achieved / limit:>8.2f} {summary['rate_limited']:>6} {100 * summary['rate_limited'] / max(requests, 1):>6.2f} "
                f"{summary['statuses'].get('failed', 0):>6} {cpu_s:>6.1f}"
            )
        for peer in ("paced", "paced-from-answers"):
            result = _punctual_script(peer, args.rows, args.rate)
            achieved = result["rows"] / result["seconds"]
            refused, done = result["refused"], result["rows"]
            print(
                f"{'peer: ' + peer:<24} {args.rate:>7.0f} {'-':>7} {achieved:>9.1f} "
                f"{achieved / args.rate:>8.2f} {achieved / args.rate:>8.2f} {refused:>6} "
                f"{100 * refused / (done + refused):>6.2f} {0:>6} {'-':>6}"
            )
    print(
        "peers: a punctual script against the burst-1 server, one request at a time at 97 % of"
        " the rate, each spun to its slot, Retry-After honoured; from-answers also sends no"
        " sooner than an interval after the last answer, less the quickest recent round trip;"
        " each stops after 60 s"
    )


def _punctual_script(kind: str, rows: int, rate: float) -> dict[str, float]:
    with bench_server("--rate-limit", str(rate), "--burst", "1") as url:
        peer = subprocess.run(
            [sys.executable, str(HERE / "_peers.py"), kind, url, str(rows), str(rate)],
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, float] = json.loads(peer.stdout)
    return result


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

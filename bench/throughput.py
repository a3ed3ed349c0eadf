"""Rows/s and client CPU per 1,000 rows: `batch-assign run` against bare client loops.

    python bench/throughput.py [--rows 20000] [--in-flight 16 64] [--curl-rows 500]

Every client runs as its own process against the same minimal loopback server
(bench/_server.py), one after another, in this one run. batch-assign runs with the journal and the
report on, `--no-check-current` and no rate limit; its CPU includes start-up, reading the input
and writing the report. Peers: a bare aiohttp loop, a bare httpx loop, a `requests` thread pool
(needs `pip install requests`) and `xargs -P16 curl` (on fewer rows: it is slow).

The last lines also give the per-row CPU ratio without fixed costs: each of batch-assign and the
aiohttp loop is run once more on a single row, and that run's CPU (start-up; for batch-assign
also ingest and report set-up) is taken off before dividing by the rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

from _common import KEY, WORKFLOW, bench_server, make_input, run_command, timed

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--curl-rows", type=int, default=500)
    args = parser.parse_args()
    peers = ["aiohttp", "httpx"] + (["requests"] if importlib.util.find_spec("requests") else [])
    results: dict[tuple[str, int], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as scratch, bench_server() as url:
        data = make_input(Path(scratch) / "in.csv", args.rows)
        for in_flight in args.in_flight:
            for peer in peers:
                t = timed(
                    [
                        sys.executable,
                        str(HERE / "_peers.py"),
                        peer,
                        url,
                        str(args.rows),
                        str(in_flight),
                    ]
                )
                results[(peer, in_flight)] = (args.rows / t.seconds, t.cpu_s / args.rows * 1000)
            report = Path(scratch) / f"run{in_flight}.report.csv"
            t = timed(
                run_command(
                    data,
                    report,
                    url,
                    "--rate",
                    "0",
                    "--concurrency",
                    str(in_flight),
                    "--no-check-current",
                ),
                env={"NEXOR_API_KEY": KEY},
            )
            assert t.exit_code == 0, f"batch-assign exited {t.exit_code}"
            results[("batch-assign", in_flight)] = (
                args.rows / t.seconds,
                t.cpu_s / args.rows * 1000,
            )
        if shutil.which("curl") and args.curl_rows:
            lines = "\n".join(
                f"{url}/leads/00000000-0000-0000-0000-{i:012d}/assign-workflow"
                for i in range(args.curl_rows)
            )
            (Path(scratch) / "urls.txt").write_text(lines + "\n")
            t = timed(
                [
                    "sh",
                    "-c",
                    f"xargs -P16 -n1 curl -s -o /dev/null -X POST -H 'X-API-Key: {KEY}' "
                    f"-H 'Content-Type: application/json' -d '{{\"workflowId\":\"{WORKFLOW}\"}}' < {scratch}/urls.txt",
                ]
            )
            results[("xargs -P16 curl", 16)] = (
                args.curl_rows / t.seconds,
                t.cpu_s / args.curl_rows * 1000,
            )
        one_row = make_input(Path(scratch) / "one.csv", 1)
        fixed_peer = timed([sys.executable, str(HERE / "_peers.py"), "aiohttp", url, "1", "1"])
        fixed_ours = timed(
            run_command(one_row, Path(scratch) / "one.report.csv", url, "--no-check-current"),
            env={"NEXOR_API_KEY": KEY},
        )
    print(f"{'client':<18} {'in flight':>9} {'rows/s':>9} {'CPU s/1k rows':>14}")
    for (name, in_flight), (rate, cpu) in results.items():
        print(f"{name:<18} {in_flight:>9} {rate:>9.0f} {cpu:>14.3f}")
    print(
        f"\nfixed CPU (one row): batch-assign {fixed_ours.cpu_s:.2f} s, aiohttp loop {fixed_peer.cpu_s:.2f} s"
    )
    for in_flight in args.in_flight:
        ours_rate, ours_cpu = results[("batch-assign", in_flight)]
        line = [f"in flight {in_flight}:"]
        line.append(f"CPU/row vs aiohttp {ours_cpu / results[('aiohttp', in_flight)][1]:.2f}x")
        marginal_ours = ours_cpu - fixed_ours.cpu_s / args.rows * 1000
        marginal_peer = results[("aiohttp", in_flight)][1] - fixed_peer.cpu_s / args.rows * 1000
        line.append(f"(without fixed costs {marginal_ours / marginal_peer:.2f}x)")
        if ("requests", in_flight) in results:
            line.append(
                f"rows/s vs requests {ours_rate / results[('requests', in_flight)][0]:.2f}x"
            )
        if ("xargs -P16 curl", 16) in results:
            line.append(
                f"rows/s vs xargs curl {ours_rate / results[('xargs -P16 curl', 16)][0]:.1f}x"
            )
        print("  ".join(line))


if __name__ == "__main__":
    main()

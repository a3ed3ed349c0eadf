"""Rows/s and client CPU per 1,000 rows: `batch-assign run` against bare client loops.

    python bench/throughput.py [--rows 20000] [--in-flight 16 64] [--curl-rows 500] [--rounds 3]

Every client runs as its own process against the same minimal loopback server
(bench/_server.py), one after another, in this one run. batch-assign runs with the journal and the
report on, `--no-check-current` and no rate limit; its CPU includes start-up, reading the input
and writing the report. Peers: a bare aiohttp loop, a bare httpx loop, a `requests` thread pool
(needs `pip install requests`) and `xargs -P16 curl` (on fewer rows: it is slow).

batch-assign runs on uvloop where it is installed (a dependency on Linux and macOS); the aiohttp
loop runs on asyncio's own loop, as the script most users would write does. So that the ratio
does not hide what uvloop gives, the same aiohttp loop also runs on uvloop (`aiohttp-uvloop`),
and the last lines give the CPU ratio against it too.

The whole set runs `--rounds` times, interleaved, and each figure is the median of its rounds: on
a shared machine a single run of one client can land in a slow spell and skew a ratio by 30 %.
The CPU ratio is also given for each client's best round (interference only ever adds CPU).

The last lines also give the per-row CPU ratio without fixed costs: each of batch-assign and the
aiohttp loop is run once more per round on a single row, and that run's CPU (start-up; for
batch-assign also ingest and report set-up) is taken off before dividing by the rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from _common import KEY, WORKFLOW, Timing, bench_server, make_input, run_command, timed

HERE = Path(__file__).resolve().parent
CURL = "xargs -P16 curl"
UVLOOP = "aiohttp-uvloop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--curl-rows", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    peers = ["aiohttp"]
    peers += [UVLOOP] if importlib.util.find_spec("uvloop") else []
    peers += ["httpx"] + (["requests"] if importlib.util.find_spec("requests") else [])
    # (client, in flight) -> one (rows/s, CPU ms per row) per round
    runs: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    fixed: dict[str, list[float]] = defaultdict(list)  # one-row CPU seconds per round
    with tempfile.TemporaryDirectory() as scratch, bench_server() as url:
        data = make_input(Path(scratch) / "in.csv", args.rows)
        one_row = make_input(Path(scratch) / "one.csv", 1)
        curl_urls = Path(scratch) / "urls.txt"
        curl_urls.write_text(
            "".join(
                f"{url}/leads/00000000-0000-0000-0000-{i:012d}/assign-workflow\n"
                for i in range(args.curl_rows)
            )
        )
        for _ in range(args.rounds):
            for in_flight in args.in_flight:
                for peer in peers:
                    peer_run = [sys.executable, str(HERE / "_peers.py"), peer, url]
                    t = timed([*peer_run, str(args.rows), str(in_flight)])
                    runs[(peer, in_flight)].append(_per_row(t, args.rows))
                report = Path(scratch) / f"run{in_flight}.report.csv"
                flags = ["--rate", "0", "--concurrency", str(in_flight), "--no-check-current"]
                t = timed(run_command(data, report, url, *flags), env={"NEXOR_API_KEY": KEY})
                assert t.exit_code == 0, f"batch-assign exited {t.exit_code}"
                runs[("batch-assign", in_flight)].append(_per_row(t, args.rows))
            if shutil.which("curl") and args.curl_rows:
                t = timed(
                    [
                        "sh",
                        "-c",
                        f"xargs -P16 -n1 curl -s -o /dev/null -X POST -H 'X-API-Key: {KEY}' "
                        f"-H 'Content-Type: application/json' "
                        f'-d \'{{"workflowId":"{WORKFLOW}"}}\' < {curl_urls}',
                    ]
                )
                runs[(CURL, 16)].append(_per_row(t, args.curl_rows))
            fixed["aiohttp"].append(
                timed([sys.executable, str(HERE / "_peers.py"), "aiohttp", url, "1", "1"]).cpu_s
            )
            one_report = Path(scratch) / "one.report.csv"
            fixed["batch-assign"].append(
                timed(
                    run_command(one_row, one_report, url, "--no-check-current"),
                    env={"NEXOR_API_KEY": KEY},
                ).cpu_s
            )
    _print(runs, fixed, args.in_flight, args.rows, args.rounds)


def _per_row(t: Timing, rows: int) -> tuple[float, float]:
    return rows / t.seconds, t.cpu_s / rows * 1000


def _print(
    runs: dict[tuple[str, int], list[tuple[float, float]]],
    fixed: dict[str, list[float]],
    in_flights: list[int],
    rows: int,
    rounds: int,
) -> None:
    median = {key: _medians(values) for key, values in runs.items()}
    print(f"medians of {rounds} interleaved round(s); CPU range across rounds in brackets")
    print(f"{'client':<18} {'in flight':>9} {'rows/s':>9} {'CPU s/1k rows':>14}  {'CPU range':>13}")
    for (name, in_flight), (rate, cpu) in median.items():
        cpus = [c for _, c in runs[(name, in_flight)]]
        spread = f"[{min(cpus):.3f}-{max(cpus):.3f}]"
        print(f"{name:<18} {in_flight:>9} {rate:>9.0f} {cpu:>14.3f}  {spread:>13}")
    ours_fixed, peer_fixed = (statistics.median(fixed[k]) for k in ("batch-assign", "aiohttp"))
    print(
        f"\nfixed CPU (one row): batch-assign {ours_fixed:.2f} s, aiohttp loop {peer_fixed:.2f} s"
    )
    for in_flight in in_flights:
        ours_rate, ours_cpu = median[("batch-assign", in_flight)]
        peer_cpu = median[("aiohttp", in_flight)][1]
        marginal_ours = ours_cpu - ours_fixed / rows * 1000
        marginal_peer = peer_cpu - peer_fixed / rows * 1000
        best = min(c for _, c in runs[("batch-assign", in_flight)]) / min(
            c for _, c in runs[("aiohttp", in_flight)]
        )
        line = [
            f"in flight {in_flight}:",
            f"CPU/row vs aiohttp {ours_cpu / peer_cpu:.2f}x",
            f"(without fixed costs {marginal_ours / marginal_peer:.2f}x; best rounds {best:.2f}x)",
        ]
        if (UVLOOP, in_flight) in median:
            line.append(f"vs aiohttp on uvloop {ours_cpu / median[(UVLOOP, in_flight)][1]:.2f}x")
        if ("requests", in_flight) in median:
            line.append(f"rows/s vs requests {ours_rate / median[('requests', in_flight)][0]:.2f}x")
        if (CURL, 16) in median:
            line.append(f"rows/s vs xargs curl {ours_rate / median[(CURL, 16)][0]:.1f}x")
        print("  ".join(line))


def _medians(values: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)


if __name__ == "__main__":
    main()

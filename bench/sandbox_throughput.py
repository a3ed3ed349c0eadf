"""How many assign-workflow requests per second the sandbox serves on this machine.

    python bench/sandbox_throughput.py [--requests 20000] [--concurrency 64]

The sandbox runs as its own process (`batch-assign sandbox`, rate limit off, no faults); a bare
aiohttp client in this process drives it over loopback, so the figure is the server's ceiling.
Later benchmarks compare their client rates with it. Bounded: stops after --requests or 120 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from _common import sandbox_process

KEY = "nxr_live_sandbox_local_key"


def seed(leads: int) -> tuple[dict[str, object], list[str], list[str]]:
    workflows = [str(uuid.uuid4()) for _ in range(2)]
    lead_ids = [str(uuid.uuid4()) for _ in range(leads)]
    data = {
        "workflows": [{"id": w, "name": f"WF {i}"} for i, w in enumerate(workflows)],
        "leads": [{"id": lead, "first_name": "Bench"} for lead in lead_ids],
    }
    return data, workflows, lead_ids


async def drive(
    url: str, workflows: list[str], leads: list[str], total: int, concurrency: int
) -> tuple[float, dict[int, int]]:
    statuses: dict[int, int] = {}
    counter = iter(range(total))
    deadline = time.monotonic() + 120
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"X-API-Key": KEY}) as session:

        async def worker() -> None:
            for i in counter:
                if time.monotonic() > deadline:
                    return
                lead = leads[i % len(leads)]
                body = {"workflowId": workflows[(i // len(leads)) % 2], "reason": "bench"}
                async with session.post(
                    f"{url}/leads/{lead}/assign-workflow", json=body
                ) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--leads", type=int, default=5_000)
    parser.add_argument("--db", action="store_true", help="use a SQLite file instead of memory")
    args = parser.parse_args()
    data, workflows, leads = seed(args.leads)
    with tempfile.TemporaryDirectory() as scratch:
        seed_path = Path(scratch) / "seed.json"
        seed_path.write_text(json.dumps(data))
        with sandbox_process(
            seed_path, *("--db", str(Path(scratch) / "sandbox.sqlite")) if args.db else ()
        ) as url:
            asyncio.run(drive(url, workflows, leads, 500, 8))  # warm-up
            elapsed, statuses = asyncio.run(
                drive(url, workflows, leads, args.requests, args.concurrency)
            )
    done = sum(statuses.values())
    print(f"{'store':<8} {'in flight':>9} {'requests':>9} {'seconds':>8} {'req/s':>8}  statuses")
    print(
        f"{'sqlite' if args.db else 'memory':<8} {args.concurrency:>9} {done:>9} {elapsed:>8.2f} {done / elapsed:>8.0f}  {statuses}"
    )


if __name__ == "__main__":
    main()

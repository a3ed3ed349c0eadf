"""What the journal costs: rows/s with it, and with its commits switched off, in one run.

    python bench/journal_cost.py [--rows 10000] [--concurrency 32] [--repeat 2]

Both variants run in this process against the sandbox (`batch-assign sandbox`, its own process,
rate limit off), alternating, each on a fresh report. "Without" replaces the journal's commit
(intents, outcomes) by a no-op: nothing is durable and the report comes out empty, so it is a
measurement, not a mode. The journal commits with synchronous=FULL in WAL mode, grouped.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import uuid
from pathlib import Path

from _common import sandbox_process

from batch_assign.config import RunConfig
from batch_assign.job import run_job
from batch_assign.journal import Journal
from batch_assign.logs import configure_logging

KEY = "nxr_live_sandbox_local_key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    configure_logging("json", level=logging.WARNING)
    workflows = [str(uuid.uuid4()) for _ in range(2)]
    leads = [str(uuid.uuid4()) for _ in range(args.rows)]
    real_apply = Journal.apply
    results: dict[str, list[float]] = {"with journal": [], "without": []}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        seed = folder / "seed.json"
        seed.write_text(
            json.dumps(
                {
                    "workflows": [{"id": w, "name": f"WF {i}"} for i, w in enumerate(workflows)],
                    "leads": [{"id": lead, "first_name": "B"} for lead in leads],
                }
            )
        )
        with sandbox_process(seed) as url:
            for round_ in range(args.repeat):
                for name in ("with journal", "without"):
                    tag = "on" if name == "with journal" else "off"
                    data = folder / f"in-{round_}-{tag}.csv"
                    target = workflows[(round_ * 2 + (name == "without")) % 2]
                    data.write_text(
                        "lead_id,workflow_id\n" + "".join(f"{lead},{target}\n" for lead in leads)
                    )
                    Journal.apply = real_apply if name == "with journal" else (lambda *a, **k: None)  # type: ignore[method-assign]
                    config = RunConfig(
                        input=str(data),
                        report=folder / f"{round_}-{tag}.report.csv",
                        base_url=url,
                        api_key=KEY,
                        rate=0,
                        concurrency=args.concurrency,
                        check_current=False,
                    )
                    summary = run_job(config)
                    results[name].append(args.rows / summary.extra["dispatch_s"])  # type: ignore[operator]
        Journal.apply = real_apply  # type: ignore[method-assign]
    print(
        f"{'variant':<14} "
        + " ".join(f"{'round ' + str(i + 1):>9}" for i in range(args.repeat))
        + f" {'best':>9}"
    )
    for name, rates in results.items():
        print(f"{name:<14} " + " ".join(f"{r:>9.0f}" for r in rates) + f" {max(rates):>9.0f}")
    cost = 1 - max(results["with journal"]) / max(results["without"])
    print(f"\njournal cost: {cost:.1%} of throughput (best of {args.repeat}, rows/s over dispatch)")


if __name__ == "__main__":
    main()

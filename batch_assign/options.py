"""The command line's shared options: `run`'s flags (which job files mirror) and the ones
`validate` shares with it."""

from __future__ import annotations

from typing import Any

import click

from batch_assign.config import (
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_GRACE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RATE,
    DEFAULT_TIMEOUT,
)

__all__ = [
    "API_KEY_FILE",
    "BASE_URL",
    "DUPLICATES",
    "MAP",
    "RUN_OPTIONS",
    "WORKFLOW_ID",
    "run_options",
]

WORKFLOW_ID = click.option("--workflow-id", help="Target workflow for rows that have none.")

MAP = click.option(
    "--map",
    "column_map",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Name the column of a field (lead_id, workflow_id, reason, actor_id); repeatable.",
)

DUPLICATES = click.option(
    "--duplicates",
    type=click.Choice(["first", "last", "error"]),
    default="first",
    show_default=True,
    help="Which row wins when a lead appears twice.",
)

BASE_URL = click.option(
    "--base-url",
    default=DEFAULT_BASE_URL,
    show_default=True,
    help="API base URL (https, or http to loopback only).",
)

API_KEY_FILE = click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False),
    help="Read the API key from this file (default: $NEXOR_API_KEY).",
)

RUN_OPTIONS = [
    click.option(
        "--job",
        type=click.Path(dir_okay=False),
        help="Read options from a job file (jobs/NAME.toml); flags override it.",
    ),
    click.option(
        "--report",
        type=click.Path(dir_okay=False),
        help="Report path (.csv, .parquet, .jsonl); default <input stem>.report.csv.",
    ),
    click.option(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        show_default=True,
        help=(
            "Requests per second, every request counted (0 = no cap of our own: as fast as "
            "the server's announced limit or its 429s allow)."
        ),
    ),
    click.option(
        "--burst",
        type=int,
        default=None,
        help="Requests that may go early at once (default: 1, evenly spaced).",
    ),
    click.option(
        "--concurrency",
        default=str(DEFAULT_CONCURRENCY),
        show_default=True,
        help="Requests in flight at most, or 'auto': grow until --rate is reached or latency "
        "stops improving.",
    ),
    WORKFLOW_ID,
    click.option("--reason", help="Reason for rows that have none."),
    click.option("--actor-id", help="Actor id for rows that have none."),
    MAP,
    DUPLICATES,
    click.option(
        "--no-check-current",
        is_flag=True,
        help="Skip the GET that leaves leads already in their target alone (halves requests; re-assigning restarts a cadence).",
    ),
    click.option(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_ATTEMPTS,
        show_default=True,
        help="Attempts per row for retryable errors (429s not counted).",
    ),
    click.option(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help="Seconds per request.",
    ),
    click.option("--max-failures", type=int, help="Stop (exit 3) after more than N failed rows."),
    click.option(
        "--max-failure-rate",
        type=float,
        help="Stop (exit 3) when the failed fraction passes F (0.2 = 20 %) after 50 rows.",
    ),
    click.option(
        "--shard",
        help="Take only the rows whose lead id hashes to shard K of N (K from 0), e.g. 0/4.",
    ),
    click.option(
        "--restart",
        is_flag=True,
        help="Forget this report's journal and start over (leads already in place stay unchanged).",
    ),
    click.option(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        show_default=True,
        help="Seconds in-flight requests get to finish after SIGINT/SIGTERM.",
    ),
    BASE_URL,
    API_KEY_FILE,
    click.option(
        "--api-key-env",
        metavar="NAME",
        help="Read the API key from this environment variable instead of NEXOR_API_KEY.",
    ),
    click.option(
        "--sandbox",
        is_flag=True,
        help="Rehearse against an embedded local sandbox seeded with the sample data (no key needed).",
    ),
    click.option(
        "--sandbox-seed",
        type=click.Path(exists=True, dir_okay=False),
        help="Seed file for --sandbox (default: the sample seed).",
    ),
    click.option(
        "--dry-run",
        is_flag=True,
        help="Read, validate and pre-check with GETs only; report what would happen. Sends no assignment.",
    ),
    click.option(
        "--log-format",
        type=click.Choice(["console", "json"]),
        help="Log format (default: console on a terminal, JSON lines otherwise).",
    ),
    click.option("--no-progress", is_flag=True, help="No progress bar, even on a terminal."),
]


def run_options(func: Any) -> Any:
    for option in reversed(RUN_OPTIONS):
        func = option(func)
    return func

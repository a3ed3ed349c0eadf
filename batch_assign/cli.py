"""The command line: a thin edge over the library. Errors map to exit codes here, and only here.

Exit codes (DESIGN section 6): 0 every row succeeded or unchanged; 1 some rows failed, invalid,
duplicate or uncertain; 2 usage, config or file-level input error (nothing sent); 3 aborted (auth
failure, failure threshold); 130/143 interrupted.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import structlog
from rich.console import Console
from rich.table import Table

from batch_assign import __version__
from batch_assign.config import (
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RATE,
    DEFAULT_TIMEOUT,
    RunConfig,
    default_report_path,
    resolve_api_key,
)
from batch_assign.errors import BatchAssignError, UsageError
from batch_assign.job import run_job
from batch_assign.logs import configure_logging, redact, remember_secret
from batch_assign.records import RunSummary
from batch_assign.sample import sample_data_dir

__all__ = ["main"]

_err = Console(stderr=True)
_out = Console()


def _parse_map(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        name, sep, column = value.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise UsageError(f"--map {value!r}: write it as FIELD=COLUMN, e.g. lead_id='Lead Id'")
        pairs.append((name.strip(), column.strip()))
    return tuple(pairs)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="batch-assign")
def cli() -> None:
    """Move leads between Nexor workflows in bulk: every row exactly once, at the rate you set."""


@cli.command()
@click.argument("input_path", metavar="INPUT", required=True)
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    help="Report path (.csv, .parquet, .jsonl); default <input stem>.report.csv.",
)
@click.option(
    "--rate",
    type=float,
    default=DEFAULT_RATE,
    show_default=True,
    help="Requests per second, every request counted (0 = unlimited).",
)
@click.option(
    "--burst", type=int, default=None, help="Requests that may go early at once (default: rate/10)."
)
@click.option(
    "--concurrency",
    type=int,
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="Requests in flight at most.",
)
@click.option("--workflow-id", help="Target workflow for rows that have none.")
@click.option("--reason", help="Reason for rows that have none.")
@click.option("--actor-id", help="Actor id for rows that have none.")
@click.option(
    "--map",
    "column_map",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Name the column of a field (lead_id, workflow_id, reason, actor_id); repeatable.",
)
@click.option(
    "--duplicates",
    type=click.Choice(["first", "last", "error"]),
    default="first",
    show_default=True,
    help="Which row wins when a lead appears twice.",
)
@click.option(
    "--no-check-current",
    is_flag=True,
    help="Skip the GET that leaves leads already in their target alone (halves requests; re-assigning restarts a cadence).",
)
@click.option(
    "--max-attempts",
    type=int,
    default=DEFAULT_MAX_ATTEMPTS,
    show_default=True,
    help="Attempts per row for retryable errors (429s not counted).",
)
@click.option(
    "--timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True, help="Seconds per request."
)
@click.option("--max-failures", type=int, help="Stop (exit 3) after more than N failed rows.")
@click.option(
    "--max-failure-rate",
    type=float,
    help="Stop (exit 3) when the failed fraction passes F (0.2 = 20 %) after 50 rows.",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Forget this report's journal and start over (leads already in place stay unchanged).",
)
@click.option(
    "--grace",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds in-flight requests get to finish after SIGINT/SIGTERM.",
)
@click.option(
    "--base-url",
    default=DEFAULT_BASE_URL,
    show_default=True,
    help="API base URL (https, or http to loopback only).",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False),
    help="Read the API key from this file (default: $NEXOR_API_KEY).",
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Rehearse against an embedded local sandbox seeded with the sample data (no key needed).",
)
@click.option(
    "--sandbox-seed",
    type=click.Path(exists=True, dir_okay=False),
    help="Seed file for --sandbox (default: the sample seed).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read, validate and pre-check with GETs only; report what would happen. Sends no assignment.",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    help="Log format (default: console on a terminal, JSON lines otherwise).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar, even on a terminal.")
def run(**options: Any) -> None:
    """Assign every row of INPUT (CSV, Parquet, or - for CSV on stdin) to its workflow."""
    configure_logging(options["log_format"])
    sandbox_cm = (
        _embedded_sandbox(options["sandbox_seed"]) if options["sandbox"] else nullcontext(None)
    )
    with sandbox_cm as sandbox:
        if sandbox is not None:
            base_url, api_key = sandbox.url, sandbox.api_key
        else:
            base_url = options["base_url"]
            api_key = resolve_api_key(options["api_key_file"], warn=_warn)
        remember_secret(api_key)
        config = RunConfig(
            input=options["input_path"],
            report=Path(options["report"] or default_report_path(options["input_path"])),
            base_url=base_url,
            api_key=api_key,
            rate=options["rate"],
            burst=options["burst"],
            concurrency=options["concurrency"],
            max_attempts=options["max_attempts"],
            timeout=options["timeout"],
            workflow_id=options["workflow_id"],
            reason=options["reason"],
            actor_id=options["actor_id"],
            column_map=_parse_map(options["column_map"]),
            duplicates=options["duplicates"],
            check_current=not options["no_check_current"],
            max_failures=options["max_failures"],
            max_failure_rate=options["max_failure_rate"],
            restart=options["restart"],
            grace=options["grace"],
        )
        if options["dry_run"] and options["report"] is None:
            config = replace(
                config,
                report=config.report.with_name(
                    config.report.name.replace(".report.", ".dry-run.report.")
                ),
            )
        summary = run_job(config, handle_signals=True, dry_run=options["dry_run"])
    _print_summary(summary)
    sys.exit(summary.exit_code)


@cli.command()
@click.argument("input_path", metavar="INPUT")
@click.option("--workflow-id", help="Target workflow for rows that have none.")
@click.option(
    "--map",
    "column_map",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Name the column of a field; repeatable.",
)
@click.option(
    "--duplicates",
    type=click.Choice(["first", "last", "error"]),
    default="first",
    show_default=True,
)
def validate(
    input_path: str, workflow_id: str | None, column_map: tuple[str, ...], duplicates: str
) -> None:
    """Check INPUT (columns, ids, duplicates) without sending anything.

    Exit 0 when every row is valid, 1 when some rows are invalid or repeated, 2 when the file
    cannot be used.
    """
    from batch_assign.validate import validate_file

    configure_logging("console" if sys.stderr.isatty() else "json")
    result = validate_file(
        input_path,
        workflow_id=workflow_id,
        column_map=_parse_map(column_map),
        duplicates=duplicates,
    )
    click.echo(result.render())
    sys.exit(result.exit_code)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8787, show_default=True, help="Port (0 = any free port).")
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    help="SQLite file to keep state in (default: in memory).",
)
@click.option(
    "--seed",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON seed: {workflows: [...], leads: [...]}.",
)
@click.option(
    "--sample", is_flag=True, help="Seed with the shipped sample data (sample_data/seed.json)."
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="A key the sandbox accepts (repeatable; default: nxr_live_sandbox_local_key).",
)
@click.option(
    "--rate-limit",
    type=float,
    default=50.0,
    show_default=True,
    help="Requests per second per key (0 = no limit).",
)
@click.option("--burst", type=int, default=50, show_default=True, help="Token bucket size per key.")
@click.option(
    "--no-rate-headers", is_flag=True, help="Leave X-RateLimit-* headers out of responses."
)
@click.option("--latency-ms", type=float, default=0.0, help="Fixed latency added to every request.")
@click.option("--jitter-ms", type=float, default=0.0, help="Random extra latency, 0 to this.")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="RULE",
    help="Fault rule, e.g. 500-after:rate=0.05, drop-after:leads=@ids.txt:times=1, 503:rate=0.01:burst=5, slow-after:rate=0.1:delay=40 (repeatable).",
)
@click.option(
    "--fault-seed", type=int, help="Seed for fault and jitter decisions (reproducible runs)."
)
def sandbox(**options: Any) -> None:
    """Serve a faithful local stand-in of the Nexor public API (for tests and rehearsals)."""
    from batch_assign.sandbox import (
        DEFAULT_API_KEY,
        FaultPlan,
        SandboxSettings,
        Store,
        load_seed,
        parse_fault_rule,
        serve_forever,
    )

    try:
        rules = tuple(parse_fault_rule(rule) for rule in options["faults"])
    except (ValueError, OSError) as exc:
        raise UsageError(f"--fault: {exc}") from None
    settings = SandboxSettings(
        api_keys=tuple(options["api_keys"]) or (DEFAULT_API_KEY,),
        rate_limit=options["rate_limit"],
        burst=options["burst"],
        rate_limit_headers=not options["no_rate_headers"],
        faults=FaultPlan(rules, options["latency_ms"], options["jitter_ms"], options["fault_seed"]),
    )
    store = Store(options["db"])
    seed_path = options["seed"] or (
        str(sample_data_dir() / "seed.json") if options["sample"] else None
    )
    if seed_path:
        try:
            workflows, leads = store.seed(load_seed(seed_path))
        except (ValueError, KeyError) as exc:
            raise UsageError(f"--seed {seed_path}: {exc}") from None
        click.echo(f"seeded {workflows} workflows and {leads} leads from {seed_path}", err=True)

    def announce(url: str) -> None:
        click.echo(f"Nexor sandbox listening on {url}")
        click.echo(f"API key: {settings.api_keys[0]}")
        click.echo("Press Ctrl-C to stop.", err=True)
        sys.stdout.flush()

    serve_forever(
        store=store,
        settings=settings,
        host=options["host"],
        port=options["port"],
        announce=announce,
    )


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="batch-assign-demo",
    show_default=True,
    help="Folder for the demo's report files.",
)
def demo(out: str) -> None:
    """Run the sample migration against an embedded sandbox and show the result (no key needed)."""
    configure_logging("console" if sys.stderr.isatty() else "json")
    folder = Path(out)
    sample = sample_data_dir() / "sample.csv"
    with _embedded_sandbox(None) as box:
        config = RunConfig(
            input=str(sample),
            report=folder / "sample.report.csv",
            base_url=box.url,
            api_key=box.api_key,
            rate=0,
            concurrency=16,
            restart=True,
        )
        summary = run_job(config, handle_signals=True)
        audit = len(box.store.audit())
    _print_summary(summary)
    _out.print(
        f"\nThe sandbox recorded {audit} assignments. Report: {config.report}\n"
        "The sample holds invalid, repeated and unknown leads on purpose: their rows are in "
        f"{folder / 'sample.report.failures.csv'}."
    )
    sys.exit(0 if summary.exit_code in (0, 1) else summary.exit_code)


@cli.command()
@click.argument("report", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Where to write the rollback input (default: <report stem>.rollback.csv).",
)
def rollback(report: str, output: str | None) -> None:
    """Write an input file that moves every succeeded lead of REPORT back to its previous workflow.

    Leads the run enrolled (they had no workflow) cannot be un-enrolled through the API; they are
    listed in <output stem>.not-reversible.csv instead.
    """
    from batch_assign.rollback import write_rollback

    files = write_rollback(Path(report), Path(output) if output else None)
    click.echo(f"{files.rows:,} leads to move back: {files.rollback}")
    click.echo(f"{files.skipped:,} leads that cannot be moved back: {files.not_reversible}")
    click.echo(f"review it, then: batch-assign run {files.rollback}")


@contextmanager
def _embedded_sandbox(seed: str | None) -> Iterator[Any]:
    from batch_assign.sandbox import load_seed, serve_in_thread

    seed_path = seed or str(sample_data_dir() / "seed.json")
    with serve_in_thread(seed=load_seed(seed_path)) as box:
        structlog.get_logger("batch_assign.cli").info(
            "batch_assign.sandbox_started", url=box.url, seed=seed_path
        )
        yield box


def _warn(message: str) -> None:
    _err.print(f"[yellow]warning:[/yellow] {message}")


def _print_summary(summary: RunSummary) -> None:
    table = Table(title="batch-assign summary", show_header=True, header_style="bold")
    table.add_column("status")
    table.add_column("rows", justify="right")
    for status, count in sorted(summary.statuses.items(), key=lambda item: -item[1]):
        table.add_row(status, f"{count:,}")
    table.add_row("[bold]total[/bold]", f"[bold]{summary.rows:,}[/bold]")
    _out.print(table)
    moves = ", ".join(f"{k} {v:,}" for k, v in summary.movement_types.items()) or "none"
    _out.print(
        f"movements: {moves} · requests {summary.requests:,} · retries {summary.retries:,} · "
        f"429s {summary.rate_limited:,} · {summary.duration_s:.1f}s · "
        f"{summary.achieved_rate:.1f} req/s · exit {summary.exit_code}"
    )
    if summary.stop_reason:
        _out.print(f"[red]stopped:[/red] {summary.stop_reason}")


class _Terminated(BaseException):
    """SIGTERM outside the dispatcher (which handles it itself): leave as 143."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


def main() -> None:
    """Entry point: run the CLI and turn our errors into one clear line and an exit code."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        _err.print("aborted")
        sys.exit(130)
    except BatchAssignError as exc:
        _err.print(f"[red]error:[/red] {redact(str(exc))}", highlight=False, markup=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _err.print("interrupted")
        sys.exit(130)
    except _Terminated:
        _err.print("terminated")
        sys.exit(143)
    except Exception:  # a bug: say so plainly, keep the key out of the traceback
        sys.stderr.write(redact(traceback.format_exc()))
        sys.stderr.write(
            "batch-assign hit an internal error (exit 70). The journal keeps the run safe to "
            "resume; please report this traceback.\n"
        )
        sys.exit(70)

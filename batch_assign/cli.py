"""The command line: a thin edge over the library. Errors map to exit codes here, and only here.

Exit codes (DESIGN section 6): 0 every row succeeded or unchanged; 1 some rows failed, invalid,
duplicate or uncertain; 2 usage, config or file-level input error (nothing sent); 3 aborted (auth
failure, failure threshold); 130/143 interrupted.
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import click
import structlog
from rich.console import Console

from batch_assign.autoscale import AUTO_MAX
from batch_assign.config import (
    RunConfig,
    check_base_url,
    default_report_path,
    resolve_api_key,
)
from batch_assign.display import LiveProgress, print_summary
from batch_assign.errors import BatchAssignError, UsageError
from batch_assign.job import run_job
from batch_assign.logs import configure_logging, redact, remember_secret
from batch_assign.options import API_KEY_FILE, BASE_URL, DUPLICATES, MAP, WORKFLOW_ID, run_options
from batch_assign.planner import parse_shard
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
@click.version_option(package_name="batch-assign", prog_name="batch-assign")
def cli() -> None:
    """Move leads between Nexor workflows in bulk: every row exactly once, at the rate you set."""


def _merge_job(ctx: click.Context, options: dict[str, Any]) -> dict[str, Any]:
    """Job file values under the flags the user actually typed."""
    if not options["job"]:
        return options
    from click.core import ParameterSource

    from batch_assign.jobfile import load_job

    renames = {"input": "input_path", "map": "column_map"}
    merged = dict(options)
    for key, value in load_job(options["job"]).items():
        name = renames.get(key, key)
        if key == "check_current":
            name, value = "no_check_current", not value
        elif key == "progress":
            name, value = "no_progress", not value
        elif key == "map":
            value = tuple(f"{field}={column}" for field, column in value.items())
        if ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            merged[name] = value
    return merged


@cli.command()
@click.argument("input_path", metavar="[INPUT]", required=False)
@run_options
@click.pass_context
def run(ctx: click.Context, /, **options: Any) -> None:
    """Assign every row of INPUT (CSV, Parquet, or - for CSV on stdin) to its workflow.

    INPUT may come from --job instead. Exit codes: 0 all rows succeeded or unchanged; 1 some
    failed, invalid, duplicate or uncertain; 2 usage or file error (nothing sent); 3 aborted;
    130/143 interrupted.
    """
    options = _merge_job(ctx, options)
    if not options["input_path"]:
        raise UsageError("run needs an INPUT file (or a --job file that names one)")
    interactive = sys.stderr.isatty() and options["log_format"] != "json"
    show_progress = interactive and not options["no_progress"]
    configure_logging(options["log_format"], level=logging.WARNING if show_progress else None)
    sandbox_cm = (
        _embedded_sandbox(options["sandbox_seed"]) if options["sandbox"] else nullcontext(None)
    )
    with sandbox_cm as sandbox:
        if sandbox is not None:
            base_url, api_key = sandbox.url, sandbox.api_key
        else:
            base_url = options["base_url"]
            api_key = resolve_api_key(
                options["api_key_file"], env_name=options["api_key_env"], warn=_warn
            )
        remember_secret(api_key)
        config = _run_config(options, base_url, api_key)
        display = LiveProgress(_err) if show_progress else None
        with display or nullcontext():
            summary = run_job(
                config,
                handle_signals=True,
                dry_run=options["dry_run"],
                on_start=(lambda _, progress: display.follow(progress)) if display else None,
            )
    print_summary(_out, summary)
    sys.exit(summary.exit_code)


def _concurrency(value: object) -> int:
    text = str(value).strip().lower()
    if text == "auto":
        return AUTO_MAX
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--concurrency must be a whole number or 'auto', got {value!r}") from None


def _run_config(options: dict[str, Any], base_url: str, api_key: str) -> RunConfig:
    report = Path(options["report"] or default_report_path(options["input_path"]))
    if options["dry_run"] and not options["report"]:
        report = report.with_name(report.name.replace(".report.", ".dry-run.report."))
    return RunConfig(
        input=options["input_path"],
        report=report,
        base_url=base_url,
        api_key=api_key,
        rate=options["rate"],
        burst=options["burst"],
        concurrency=_concurrency(options["concurrency"]),
        auto_concurrency=str(options["concurrency"]).strip().lower() == "auto",
        max_attempts=options["max_attempts"],
        timeout=options["timeout"],
        workflow_id=options["workflow_id"],
        reason=options["reason"],
        actor_id=options["actor_id"],
        column_map=_parse_map(tuple(options["column_map"])),
        duplicates=options["duplicates"],
        check_current=not options["no_check_current"],
        max_failures=options["max_failures"],
        max_failure_rate=options["max_failure_rate"],
        restart=options["restart"],
        grace=options["grace"],
        shard=parse_shard(options["shard"]) if options["shard"] else None,
        job_name=Path(options["job"]).stem if options["job"] else None,
    )


@cli.command()
@click.argument("input_path", metavar="INPUT")
@WORKFLOW_ID
@MAP
@DUPLICATES
@click.option(
    "--preflight",
    is_flag=True,
    help="Also check through GET /workflows that every target workflow exists (warns about paused ones).",
)
@BASE_URL
@API_KEY_FILE
@click.option(
    "--sandbox",
    is_flag=True,
    help="Run --preflight against an embedded sandbox seeded with the sample data.",
)
def validate(
    input_path: str,
    workflow_id: str | None,
    column_map: tuple[str, ...],
    duplicates: str,
    preflight: bool,
    base_url: str,
    api_key_file: str | None,
    sandbox: bool,
) -> None:
    """Check INPUT (columns, ids, duplicates) without sending anything.

    Exit 0 when every row is valid, 1 when some rows are invalid or repeated (or, with
    --preflight, a target workflow does not exist), 2 when the file cannot be used.
    """
    from batch_assign.validate import check_workflows, validate_file

    configure_logging("console" if sys.stderr.isatty() else "json", level=logging.WARNING)
    result = validate_file(
        input_path,
        workflow_id=workflow_id,
        column_map=_parse_map(column_map),
        duplicates=duplicates,
    )
    if preflight:
        with _embedded_sandbox(None) if sandbox else nullcontext(None) as box:
            url = box.url if box else base_url
            key = box.api_key if box else resolve_api_key(api_key_file, warn=_warn)
            remember_secret(key)
            check_base_url(url)
            result = check_workflows(result, url, key)
    click.echo(result.render())
    sys.exit(result.exit_code)


@cli.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The merged report (.csv, .parquet, .jsonl).",
)
def merge(reports: tuple[str, ...], output: str) -> None:
    """Join the reports of a sharded run (--shard K/N) into one, checking every shard is there
    and no row appears twice."""
    from batch_assign.merge import merge_reports

    result = merge_reports([Path(r) for r in reports], Path(output))
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(result.statuses.items()))
    click.echo(
        f"merged {len(reports)} shard reports, {result.rows:,} rows ({counts}): {result.path}"
    )


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
            rate=150,
            concurrency=16,
            restart=True,
        )
        summary = run_job(config, handle_signals=True)
        audit = len(box.store.audit())
    print_summary(_out, summary)
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
    from batch_assign.sandbox import SandboxSettings, load_seed, serve_in_thread

    seed_path = seed or str(sample_data_dir() / "seed.json")
    settings = SandboxSettings(rate_limit=200, burst=50)
    with serve_in_thread(seed=load_seed(seed_path), settings=settings) as box:
        structlog.get_logger("batch_assign.cli").info(
            "batch_assign.sandbox_started", url=box.url, seed=seed_path
        )
        yield box


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


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
        click.echo(f"error: {redact(str(exc))}", err=True)  # one line, never wrapped
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

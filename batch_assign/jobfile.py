"""Job files (`jobs/*.toml`): every `run` option under the flag's name, checked strictly.

    input = "../sample_data/sample.csv"   # paths are relative to the job file
    report = "../out/sample.report.csv"
    rate = 10
    [map]
    lead_id = "Lead ID"

Unknown keys and wrong types are errors that name the file, the key and the fix. Flags given on
the command line override the file.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

from batch_assign.errors import UsageError

__all__ = ["JOB_KEYS", "load_job"]

_NUMBER = (int, float)
JOB_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "input": (str, "the input file (CSV or Parquet)"),
    "report": (str, "the report path (.csv, .parquet, .jsonl)"),
    "base_url": (str, "the API base URL"),
    "api_key_file": (str, "a file holding the API key"),
    "api_key_env": (str, "the environment variable holding the API key"),
    "rate": (_NUMBER, "requests per second"),
    "burst": (int, "requests that may go early at once"),
    "concurrency": ((int, str), 'requests in flight at most, or "auto"'),
    "max_attempts": (int, "attempts per row"),
    "timeout": (_NUMBER, "seconds per request"),
    "workflow_id": (str, "default target workflow"),
    "reason": (str, "default reason"),
    "actor_id": (str, "default actor id"),
    "map": (dict, "a table FIELD = COLUMN"),
    "duplicates": (str, "first, last or error"),
    "check_current": (bool, "true or false"),
    "max_failures": (int, "stop after this many failed rows"),
    "max_failure_rate": (_NUMBER, "stop above this failed fraction"),
    "shard": (str, "K/N"),
    "grace": (_NUMBER, "seconds for in-flight requests after a signal"),
    "log_format": (str, "console or json"),
    "progress": (bool, "true or false"),
}
_PATH_KEYS = ("input", "report", "api_key_file")
_TYPE_NAMES = {str: "a string", int: "a whole number", bool: "true or false", dict: "a table"}


def _type_name(expected: type | tuple[type, ...]) -> str:
    if expected == _NUMBER:
        return "a number"
    if isinstance(expected, tuple):
        return 'a whole number or "auto"'
    return _TYPE_NAMES.get(expected, expected.__name__)


def load_job(path: str | Path) -> dict[str, Any]:
    """Read and check a job file; returns its values with paths made absolute."""
    job = Path(path)
    try:
        data = tomllib.loads(job.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--job {job}: no such job file") from None
    except OSError as exc:
        raise UsageError(f"--job {job}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{job}: not valid TOML ({exc})") from None
    values: dict[str, Any] = {}
    value: Any
    for key, value in data.items():
        if key not in JOB_KEYS:
            close = difflib.get_close_matches(key, JOB_KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(JOB_KEYS)}"
            raise UsageError(f"{job}: unknown key '{key}' ({hint})")
        expected, meaning = JOB_KEYS[key]
        wrong_bool = isinstance(value, bool) and expected is not bool
        if not isinstance(value, expected) or wrong_bool:
            raise UsageError(
                f"{job}: key '{key}' must be {_type_name(expected)} ({meaning}), got {value!r}"
            )
        if key == "concurrency" and isinstance(value, str) and value != "auto":
            raise UsageError(
                f"{job}: key 'concurrency' must be a whole number or \"auto\", got {value!r}"
            )
        if key == "map":
            for field, column in dict(data[key]).items():
                if not isinstance(column, str):
                    raise UsageError(f"{job}: [map] {field} must be a column name string")
        if key in _PATH_KEYS:
            value = str((job.parent / str(value)).resolve()) if value != "-" else value
        values[key] = value
    return values

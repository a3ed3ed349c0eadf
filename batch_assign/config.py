"""Run configuration: flags (and later job files) become one validated, frozen `RunConfig`.

The environment is read here and nowhere else.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from batch_assign.errors import UsageError
from batch_assign.records import Shard

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_RATE",
    "DEFAULT_TIMEOUT",
    "ColumnMap",
    "RunConfig",
    "check_base_url",
    "default_report_path",
    "resolve_api_key",
]

DEFAULT_BASE_URL = "https://api.getnexor.ai/api/public"
DEFAULT_RATE = 10.0
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_TIMEOUT = 30.0
DEFAULT_GRACE = 10.0
API_KEY_ENV = "NEXOR_API_KEY"
FIELDS = ("lead_id", "workflow_id", "reason", "actor_id")

ColumnMap = tuple[tuple[str, str], ...]
"""`--map FIELD=COLUMN` pairs, in the order given."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything `run` needs, validated. The key is kept out of `repr`."""

    input: str
    report: Path
    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default="", repr=False)
    rate: float = DEFAULT_RATE
    burst: int | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    auto_concurrency: bool = False
    """`--concurrency auto`: `concurrency` is then the ceiling the controller may grow to."""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout: float = DEFAULT_TIMEOUT
    workflow_id: str | None = None
    reason: str | None = None
    actor_id: str | None = None
    column_map: ColumnMap = ()
    duplicates: str = "first"
    check_current: bool = True
    max_failures: int | None = None
    max_failure_rate: float | None = None
    restart: bool = False
    grace: float = DEFAULT_GRACE
    shard: Shard | None = None
    job_name: str | None = None
    """The job file's stem when run with --job: runs of one job never overlap."""

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise UsageError(f"--rate must be 0 (unlimited) or more, got {self.rate}")
        if self.burst is not None and self.burst < 1:
            raise UsageError(f"--burst must be at least 1 (1 = evenly spaced), got {self.burst}")
        if self.concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.max_attempts < 1:
            raise UsageError(f"--max-attempts must be at least 1, got {self.max_attempts}")
        if self.timeout <= 0:
            raise UsageError(f"--timeout must be positive, got {self.timeout}")
        if self.duplicates not in ("first", "last", "error"):
            raise UsageError(f"--duplicates must be first, last or error, got {self.duplicates!r}")
        if self.max_failure_rate is not None and not 0 < self.max_failure_rate <= 1:
            raise UsageError(
                f"--max-failure-rate is a fraction between 0 and 1 (0.2 = 20 %), "
                f"got {self.max_failure_rate}"
            )
        for flag, value in (
            ("--workflow-id", self.workflow_id),
            ("--reason", self.reason),
            ("--actor-id", self.actor_id),
        ):
            _check_text(flag, value)
        for name, _ in self.column_map:
            if name not in FIELDS:
                raise UsageError(f"--map {name}=…: the field must be one of {', '.join(FIELDS)}")
        check_base_url(self.base_url)

    def sending_options(self) -> dict[str, object]:
        """The options that change what is sent: a journal is bound to these."""
        return {
            "base_url": self.base_url.rstrip("/"),
            "workflow_id": self.workflow_id,
            "reason": self.reason,
            "actor_id": self.actor_id,
            "column_map": [list(pair) for pair in self.column_map],
            "duplicates": self.duplicates,
            "check_current": self.check_current,
            "shard": str(self.shard) if self.shard else None,
        }

    def public(self) -> dict[str, object]:
        """The settings worth logging at start: everything but the key."""
        return {
            "input": self.input,
            "report": str(self.report),
            "base_url": self.base_url,
            "rate": self.rate,
            "burst": self.burst,
            "concurrency": self.concurrency,
            "max_attempts": self.max_attempts,
            "timeout": self.timeout,
            "workflow_id": self.workflow_id,
            "duplicates": self.duplicates,
            "check_current": self.check_current,
            "max_failures": self.max_failures,
            "max_failure_rate": self.max_failure_rate,
            "shard": str(self.shard) if self.shard else None,
        }


def _check_text(flag: str, value: str | None) -> None:
    """A flag value must be text we can send: bytes the terminal could not decode are not."""
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(
            f"{flag} is not valid UTF-8 (an undecodable byte at character {exc.start + 1}): "
            "check the shell's or the script's text encoding"
        ) from None


def default_report_path(input_path: str) -> Path:
    """`<input stem>.report.csv` beside the input (in the working directory for stdin)."""
    if input_path == "-":
        return Path("stdin.report.csv")
    path = Path(input_path)
    return path.with_name(f"{path.stem}.report.csv")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> None:
    """Refuse anything but https, except plain http to a loopback address (G8)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--base-url must be an http(s) URL, got {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UsageError(
            f"refusing to send the API key over plain http to {parts.hostname}: "
            "use https (plain http is allowed only to localhost, 127.0.0.0/8 and ::1)"
        )


def resolve_api_key(
    api_key_file: str | None, *, env_name: str | None = None, warn: object = None
) -> str:
    """The key from `--api-key-file`, else from `$NEXOR_API_KEY` (or `env_name`); never a flag."""
    if api_key_file:
        path = Path(api_key_file)
        try:
            mode = path.stat().st_mode
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"--api-key-file {path}: cannot read it ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise UsageError(
                f"--api-key-file {path} is not text (not UTF-8): it should hold the key alone"
            ) from None
        if mode & stat.S_IROTH:
            raise UsageError(
                f"--api-key-file {path} can be read by every user of this machine; "
                f"refusing to use it. Run: chmod 600 {path}"
            )
        if mode & stat.S_IRGRP and callable(warn):
            warn(f"{path} can be read by its group; consider: chmod 600 {path}")
        if not key:
            raise UsageError(f"--api-key-file {path} is empty")
        return _check_key(key, f"the key in {path}")
    name = env_name or API_KEY_ENV
    key = os.environ.get(name, "").strip()
    if not key:
        raise UsageError(
            f"no API key: set {name} or pass --api-key-file PATH "
            "(or use --sandbox to rehearse against a local sandbox)"
        )
    return _check_key(key, f"${name}")


def _check_key(key: str, source: str) -> str:
    """An HTTP header carries the key: printable ASCII only. The key itself is never shown."""
    for position, char in enumerate(key, 1):
        if not (char.isascii() and char.isprintable()):
            raise UsageError(
                f"{source} has a character an API key cannot have (non-ASCII or a control "
                f"character, at position {position} of {len(key)}): check how it was copied"
            )
    return key

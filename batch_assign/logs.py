"""structlog set-up, done once by the CLI: console lines on a terminal, JSON lines otherwise.

A processor redacts anything that looks like an API key, whatever the event says.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any, TextIO, cast

import structlog

__all__ = [
    "CURRENT_ROW",
    "KEY_PATTERN",
    "configure_logging",
    "known_secrets",
    "redact",
    "remember_secret",
]

KEY_PATTERN = r"nxr_(?:live|test)_[A-Za-z0-9_\-]+"
"""Anything shaped like a Nexor API key."""
_KEY_PATTERN = re.compile(KEY_PATTERN)
_secrets: set[str] = set()


def redact(text: str) -> str:
    """`text` with every known secret and anything shaped like a Nexor key replaced."""
    for secret in _secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return _KEY_PATTERN.sub("nxr_[REDACTED]", text)


def _redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


CURRENT_ROW: ContextVar[tuple[int, str | None] | None] = ContextVar("row", default=None)
"""(row, lead id) of the row the current task works on: every log event names them. One plain
context variable, set and reset per row, costs a tenth of structlog's bind/unbind (~1 % of a
row's CPU)."""


def _add_row(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    current = CURRENT_ROW.get()
    if current is not None:
        event.setdefault("row", current[0])
        event.setdefault("lead_id", current[1])
    return event


def known_secrets() -> tuple[str, ...]:
    return tuple(_secrets)


def remember_secret(secret: str) -> None:
    """Redact this exact value too (keys that do not look like `nxr_live_…`)."""
    if len(secret) >= 6:
        _secrets.add(secret)


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is now: a live progress bar redirects it to draw log
    lines above itself instead of through it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(fmt: str | None = None, *, level: int | None = None) -> str:
    """Configure structlog for the process; returns the format chosen (console or json)."""
    chosen = fmt or ("console" if sys.stderr.isatty() else "json")
    if level is None:
        level = logging.INFO
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if chosen == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_row,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )
    return chosen

"""The package as a library and as a command: its public names, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import batch_assign

ROOT = Path(__file__).resolve().parent.parent


def test_every_public_name_resolves() -> None:
    """Each name in `__all__` is importable from the package, though loaded on first use."""
    missing = [name for name in batch_assign.__all__ if getattr(batch_assign, name, None) is None]
    assert [] == missing


def test_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(batch_assign, "no_such_name")


def test_importing_the_package_loads_no_heavy_dependency() -> None:
    """The command's entry point imports the CLI with the garbage collector off; that covers
    polars, aiohttp and httpx only if the package's `__init__` has not loaded them before."""
    probe = (
        "import sys, batch_assign.__main__; "
        "print(sorted(m for m in ('polars', 'aiohttp', 'httpx', 'structlog') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "[]" == out.stdout.strip()


def test_the_command_runs_the_tuned_entry_point() -> None:
    """`batch-assign` and `python -m batch_assign` start the same way."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"batch-assign": "batch_assign.__main__:main"} == scripts

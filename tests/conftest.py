"""Shared fixtures: a real sandbox on a free loopback port, seeded data, and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from batch_assign.sandbox import (
    FaultPlan,
    FaultRule,
    RunningSandbox,
    SandboxSettings,
    serve_in_thread,
)

REPO = Path(__file__).resolve().parent.parent


@dataclass
class World:
    """Workflows and leads a test seeded, by name."""

    workflows: dict[str, str]
    leads: dict[str, str]

    def seed(self) -> dict[str, Any]:
        return {
            "workflows": [
                {"id": wid, "name": name, "paused": name.startswith("paused")}
                for name, wid in self.workflows.items()
            ],
            "leads": [{"id": lid, "first_name": name} for name, lid in self.leads.items()],
        }


@pytest.fixture
def anyio_backend() -> str:
    """The async tests (`pytest.mark.anyio`) run on asyncio, the backend the tool runs on."""
    return "asyncio"


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def world() -> World:
    return World(
        workflows={name: new_id() for name in ("alpha", "beta", "paused-gamma")},
        leads={name: new_id() for name in ("ann", "bob", "cid")},
    )


@pytest.fixture
def sandbox(world: World) -> Iterator[RunningSandbox]:
    with serve_in_thread(seed=world.seed(), settings=SandboxSettings(rate_limit=0)) as box:
        yield box


def start_sandbox(
    seed: dict[str, Any] | None = None,
    *,
    rate_limit: float = 0,
    burst: int = 50,
    rules: tuple[FaultRule, ...] = (),
    latency_ms: float = 0,
    fault_seed: int | None = 1,
    headers: bool = True,
) -> Any:
    """A context manager for a sandbox with the given limits and faults."""
    settings = SandboxSettings(
        rate_limit=rate_limit,
        burst=burst,
        rate_limit_headers=headers,
        faults=FaultPlan(rules, latency_ms=latency_ms, seed=fault_seed),
    )
    return serve_in_thread(seed=seed, settings=settings)


def make_migration(
    tmp_path: Path, n: int, *, name: str = "input.csv"
) -> tuple[Path, dict[str, Any], list[dict[str, str]]]:
    """n leads: a third with no workflow, a third elsewhere, a third already in their target."""
    wf = [new_id() for _ in range(3)]
    leads, rows = [], []
    for i in range(n):
        lead_id = new_id()
        target = wf[i % 2]
        kind = i % 3
        current = None if kind == 0 else (wf[2] if kind == 1 else target)
        lead: dict[str, Any] = {"id": lead_id, "first_name": f"L{i}"}
        if current:
            lead["workflow_id"] = current
        leads.append(lead)
        rows.append(
            {"lead_id": lead_id, "workflow_id": target, "reason": f"move {i}", "actor_id": "tests"}
        )
    seed = {"workflows": [{"id": w, "name": f"WF {i}"} for i, w in enumerate(wf)], "leads": leads}
    path = tmp_path / name
    write_csv(path, rows)
    return path, seed, rows


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    import csv

    header = header or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_args(path: Path | str, report: Path, box: RunningSandbox, *extra: str) -> list[str]:
    """`run INPUT --report R --base-url SANDBOX --rate 0 ...`: the arguments most tests pass."""
    return ["run", str(path), "--report", str(report), "--base-url", box.url, "--rate", "0", *extra]


def run_cli(
    *args: str, env: dict[str, str] | None = None, input: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python -m batch_assign ARGS` as a user would; the key only ever in the environment."""
    full_env = {k: v for k, v in os.environ.items() if k != "NEXOR_API_KEY"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "batch_assign", *args],
        env=full_env,
        input=input.decode() if input is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_report(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())

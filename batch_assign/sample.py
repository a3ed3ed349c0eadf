"""Realistic migration files of any size, with the sandbox seed that matches them.

The shape (per 1,000 rows, roughly): 400 leads moving from another workflow (reassignment), 400
leads with no workflow yet (enrollment), 100 already in their target (unchanged), 30 invalid rows,
20 repeated leads, 20 unknown leads (404), the rest spread across them; ids now and then in upper
case or braces, as exports from other tools produce them.
"""

from __future__ import annotations

import csv
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SAMPLE_COLUMNS", "SampleSet", "generate", "sample_data_dir", "write_sample"]

SAMPLE_COLUMNS = ("Lead ID", "workflowId", "reason", "actor_id", "email")
_WORKFLOWS = (
    ("Q1 Outbound - Enterprise", False),
    ("Q1 Outbound - Mid-market", False),
    ("Re-engagement - Closed Lost", False),
    ("Nurture - Newsletter", False),
    ("Holiday Pause", True),
)
_REASONS = (
    "Territory realignment Q1",
    "Moved to re-engagement after 90 days without reply",
    "Upgraded to enterprise segment",
    "Campaign consolidation, see OPS-1432",
    "",
)
_ACTORS = ("ops-migration-bot", "jane.doe@acme.example", "cron-nightly", "")
_FIRST = ("Ana", "Ben", "Chloé", "Dmitri", "Emeka", "Farah", "Gus", "Hana", "Ivo", "José")
_LAST = ("Okafor", "Smith", "Müller", "Tanaka", "García", "Kowalski", "Nguyen", "O'Brien")


def sample_data_dir() -> Path:
    """Where the shipped sample files are: inside the wheel, or `sample_data/` in a checkout."""
    packaged = Path(__file__).with_name("_sample_data")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "sample_data"


@dataclass(frozen=True, slots=True)
class SampleSet:
    workflows: list[dict[str, Any]]
    leads: list[dict[str, Any]]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _messy(rng: random.Random, value: str) -> str:
    roll = rng.random()
    if roll < 0.03:
        return value.upper()
    if roll < 0.05:
        return "{" + value + "}"
    if roll < 0.06:
        return f"  {value} "
    return value


def generate(rows: int, *, seed: int = 7) -> tuple[SampleSet, Iterator[list[str]]]:
    """The seed (workflows and leads) and a lazy stream of input rows, all from `seed`.

    The leads list holds every lead the rows refer to, so for millions of rows prefer
    `write_sample(..., seed_path=None)`.
    """
    rng = random.Random(seed)
    workflows = [
        {"id": _uuid(rng), "name": name, "paused": paused, "goal_type": "meeting"}
        for name, paused in _WORKFLOWS
    ]
    ids: list[str] = [str(w["id"]) for w in workflows]
    leads: list[dict[str, Any]] = []

    def lead(current: str | None) -> str:
        lead_id = _uuid(rng)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        leads.append(
            {
                "id": lead_id,
                "first_name": first,
                "last_name": last,
                "email": f"{first.lower()}.{len(leads)}@example.com",
                "company": f"Acme {len(leads) % 97}",
                **({"workflow_id": current} if current else {}),
            }
        )
        return lead_id

    def stream() -> Iterator[list[str]]:
        seen: list[str] = []
        for index in range(rows):
            target = rng.choice(ids[:4]) if rng.random() < 0.95 else ids[4]
            roll = rng.random()
            reason, actor = rng.choice(_REASONS), rng.choice(_ACTORS)
            if roll < 0.40:
                current = rng.choice([i for i in ids if i != target])
                lead_id = lead(current)
            elif roll < 0.80:
                lead_id = lead(None)
            elif roll < 0.90:
                lead_id = lead(target)
            elif roll < 0.93:
                yield _invalid(rng, index, target, reason, actor)
                continue
            elif roll < 0.95 and seen:
                lead_id = rng.choice(seen[-50:])
            elif roll < 0.97:
                lead_id = _uuid(rng)  # not in the sandbox: 404
            else:
                lead_id = lead(rng.choice([None, *ids]))
            seen.append(lead_id)
            email = f"lead{index}@example.com"
            yield [_messy(rng, lead_id), _messy(rng, target), reason, actor, email]

    return SampleSet(workflows, leads), stream()


def _invalid(rng: random.Random, index: int, target: str, reason: str, actor: str) -> list[str]:
    kind = rng.randrange(4)
    email = f"lead{index}@example.com"
    if kind == 0:
        return ["", target, reason, actor, email]
    if kind == 1:
        return [f"LEAD-{index:06d}", target, reason, actor, email]
    if kind == 2:
        return [_uuid(rng), "Q1 Outbound", reason, actor, email]
    return [_uuid(rng)[:-3], target, reason, actor, email]


def write_sample(
    rows: int, csv_path: Path, *, seed_path: Path | None = None, seed: int = 7
) -> SampleSet:
    """Write `rows` input rows to `csv_path` (streamed) and, optionally, the sandbox seed."""
    sample, stream = generate(rows, seed=seed)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SAMPLE_COLUMNS)
        batch: list[list[str]] = []
        for row in stream:
            batch.append(row)
            if len(batch) >= 10_000:
                writer.writerows(batch)
                batch.clear()
                if seed_path is None:
                    sample.leads.clear()  # nobody needs them: keep memory flat
        writer.writerows(batch)
    if seed_path is not None:
        seed_path.write_text(
            json.dumps({"workflows": sample.workflows, "leads": sample.leads}, indent=1) + "\n",
            encoding="utf-8",
        )
    return sample

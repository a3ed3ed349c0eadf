"""The sandbox's SQLite store: workflows, leads, workflow runs and an audit log of every assignment.

All access goes through one connection guarded by a lock, so the server thread and a test thread
reading the audit table never trip over each other.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["AssignResult", "AuditEntry", "NotFound", "Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, goal_type TEXT NOT NULL DEFAULT 'meeting',
    paused INTEGER NOT NULL DEFAULT 0, is_active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leads (
    id TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, email TEXT, phone TEXT, source TEXT,
    company TEXT, title TEXT, metadata TEXT NOT NULL DEFAULT '{}', campaign_id TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS workflow_runs (
    id TEXT PRIMARY KEY, lead_id TEXT NOT NULL, workflow_id TEXT NOT NULL,
    is_active INTEGER NOT NULL, run_status TEXT NOT NULL, cadence_state TEXT NOT NULL,
    deactivation_reason TEXT, created_at TEXT NOT NULL, deactivated_at TEXT
);
CREATE INDEX IF NOT EXISTS workflow_runs_active ON workflow_runs (lead_id, is_active);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, lead_id TEXT NOT NULL,
    from_workflow_id TEXT, to_workflow_id TEXT NOT NULL, new_run_id TEXT NOT NULL,
    movement_type TEXT NOT NULL, reason TEXT, actor_id TEXT
);
"""


class NotFound(Exception):
    """The lead or workflow does not exist; `what` is "Lead" or "Workflow"."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass(frozen=True, slots=True)
class AssignResult:
    workflow_run_id: str
    workflow_id: str
    workflow_name: str
    movement_type: str
    paused: bool


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit table: every assignment the sandbox applied."""

    seq: int
    at: str
    lead_id: str
    from_workflow_id: str | None
    to_workflow_id: str
    new_run_id: str
    movement_type: str
    reason: str | None
    actor_id: str | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    """SQLite-backed state of the sandbox; `path=None` keeps everything in memory."""

    def __init__(self, path: str | None = None) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path or ":memory:", check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        if path:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writes -------------------------------------------------------------------------------

    def add_workflow(
        self,
        name: str,
        *,
        workflow_id: str | None = None,
        paused: bool = False,
        goal_type: str = "meeting",
    ) -> str:
        workflow_id = (workflow_id or str(uuid.uuid4())).lower()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO workflows VALUES (?, ?, ?, ?, 1, ?)",
                (workflow_id, name, goal_type, int(paused), _now()),
            )
        return workflow_id

    def set_paused(self, workflow_id: str, paused: bool) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE workflows SET paused = ? WHERE id = ?", (int(paused), workflow_id)
            )

    def create_lead(self, fields: Mapping[str, Any], *, lead_id: str | None = None) -> str:
        """Create one lead (and enroll it if `workflow_id` names a known workflow)."""
        lead_id = (lead_id or str(fields.get("id") or uuid.uuid4())).lower()
        now = _now()
        with self._lock, self._transaction():
            workflow_id = fields.get("workflow_id")
            workflow_id = workflow_id.lower() if isinstance(workflow_id, str) else None
            if workflow_id is not None and not self._workflow(workflow_id):
                raise NotFound("Workflow")
            self._db.execute(
                "INSERT INTO leads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    lead_id,
                    fields.get("first_name"),
                    fields.get("last_name"),
                    fields.get("email"),
                    fields.get("phone"),
                    fields.get("source", "api"),
                    fields.get("company"),
                    fields.get("title"),
                    json.dumps(fields.get("metadata") or {}),
                    fields.get("campaign_id"),
                    now,
                    now,
                ),
            )
            if workflow_id is not None:
                self._start_run(lead_id, workflow_id, now)
        return lead_id

    def assign(
        self, lead_id: str, workflow_id: str, reason: str | None, actor_id: str | None
    ) -> AssignResult:
        """Enroll or reassign, exactly as the API documents; every call is one audit row."""
        now = _now()
        with self._lock, self._transaction():
            if self._db.execute("SELECT 1 FROM leads WHERE id = ?", (lead_id,)).fetchone() is None:
                raise NotFound("Lead")
            workflow = self._workflow(workflow_id)
            if workflow is None:
                raise NotFound("Workflow")
            active = self._db.execute(
                "SELECT id, workflow_id FROM workflow_runs WHERE lead_id = ? AND is_active = 1",
                (lead_id,),
            ).fetchall()
            if active:
                self._db.execute(
                    "UPDATE workflow_runs SET is_active = 0, run_status = 'deactivated',"
                    " deactivation_reason = ?, deactivated_at = ? WHERE lead_id = ? AND is_active = 1",
                    (reason, now, lead_id),
                )
            movement = "reassignment" if active else "enrollment"
            run_id = self._start_run(lead_id, workflow_id, now)
            self._db.execute(
                "INSERT INTO audit (at, lead_id, from_workflow_id, to_workflow_id, new_run_id,"
                " movement_type, reason, actor_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    now,
                    lead_id,
                    active[0]["workflow_id"] if active else None,
                    workflow_id,
                    run_id,
                    movement,
                    reason,
                    actor_id,
                ),
            )
            self._db.execute("UPDATE leads SET updated_at = ? WHERE id = ?", (now, lead_id))
        return AssignResult(
            run_id, workflow_id, workflow["name"], movement, bool(workflow["paused"])
        )

    def seed(self, data: Mapping[str, Any]) -> tuple[int, int]:
        """Load `{"workflows": [...], "leads": [...]}`; returns (workflows, leads) added."""
        workflows = data.get("workflows") or []
        leads = data.get("leads") or []
        for item in workflows:
            self.add_workflow(
                item["name"],
                workflow_id=item.get("id"),
                paused=bool(item.get("paused", False)),
                goal_type=item.get("goal_type", "meeting"),
            )
        for item in leads:
            self.create_lead(item, lead_id=item.get("id"))
        return len(workflows), len(leads)

    # --- reads --------------------------------------------------------------------------------

    def get_lead(self, lead_id: str) -> dict[str, Any]:
        """The lead in the API's newer shape (`lead` object with `active_workflow_run`)."""
        with self._lock:
            lead = self._db.execute("SELECT * FROM leads WHERE id = ?", (lead_id,)).fetchone()
            if lead is None:
                raise NotFound("Lead")
            run = self._db.execute(
                "SELECT r.*, w.name AS workflow_name, w.goal_type FROM workflow_runs r"
                " JOIN workflows w ON w.id = r.workflow_id"
                " WHERE r.lead_id = ? AND r.is_active = 1",
                (lead_id,),
            ).fetchone()
        active = None
        if run is not None:
            active = {
                "id": run["id"],
                "workflow_id": run["workflow_id"],
                "is_active": True,
                "human_takeover": False,
                "cadence_state": run["cadence_state"],
                "run_status": run["run_status"],
                "workflow": {
                    "id": run["workflow_id"],
                    "name": run["workflow_name"],
                    "goal_type": run["goal_type"],
                },
                "current_status": {"step": 1, "state": run["cadence_state"]},
            }
        return {
            "id": lead["id"],
            "first_name": lead["first_name"],
            "last_name": lead["last_name"],
            "email": lead["email"],
            "phone": lead["phone"],
            "source": lead["source"],
            "company": lead["company"],
            "title": lead["title"],
            "metadata": json.loads(lead["metadata"]),
            "active_workflow_run": active,
            "created_at": lead["created_at"],
            "updated_at": lead["updated_at"],
        }

    def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._workflow(workflow_id)
        if row is None:
            raise NotFound("Workflow")
        return _workflow_json(row)

    def list_workflows(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM workflows").fetchone()[0]
            rows = self._db.execute(
                "SELECT * FROM workflows ORDER BY created_at, id LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return [_workflow_json(row) for row in rows], int(total)

    def audit(self, lead_id: str | None = None) -> list[AuditEntry]:
        """Every assignment applied so far, oldest first (optionally for one lead)."""
        query = "SELECT * FROM audit"
        args: tuple[str, ...] = ()
        if lead_id is not None:
            query += " WHERE lead_id = ?"
            args = (lead_id,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", args).fetchall()
        return [AuditEntry(**dict(row)) for row in rows]

    def active_workflow(self, lead_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT workflow_id FROM workflow_runs WHERE lead_id = ? AND is_active = 1",
                (lead_id,),
            ).fetchone()
        return None if row is None else str(row[0])

    def deactivation_reasons(self, lead_id: str) -> list[str | None]:
        with self._lock:
            rows = self._db.execute(
                "SELECT deactivation_reason FROM workflow_runs WHERE lead_id = ? AND is_active = 0"
                " ORDER BY deactivated_at",
                (lead_id,),
            ).fetchall()
        return [row[0] for row in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                table: int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("workflows", "leads", "workflow_runs", "audit")
            }

    # --- helpers ------------------------------------------------------------------------------

    def _workflow(self, workflow_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM workflows WHERE id = ?", (workflow_id,)
        ).fetchone()
        return row

    def _start_run(self, lead_id: str, workflow_id: str, now: str) -> str:
        paused = bool(
            self._db.execute(
                "SELECT paused FROM workflows WHERE id = ?", (workflow_id,)
            ).fetchone()[0]
        )
        run_id = str(uuid.uuid4())
        self._db.execute(
            "INSERT INTO workflow_runs VALUES (?, ?, ?, 1, ?, ?, NULL, ?, NULL)",
            (
                run_id,
                lead_id,
                workflow_id,
                "paused" if paused else "active",
                "paused" if paused else "running",
                now,
            ),
        )
        return run_id

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN/COMMIT around a block, ROLLBACK when it raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _workflow_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "goal_type": row["goal_type"],
        "paused": bool(row["paused"]),
        "is_active": bool(row["is_active"]),
        "created_at": row["created_at"],
    }

"""A faithful local stand-in of the Nexor public API, for tests, rehearsals and the demo."""

from __future__ import annotations

from batch_assign.sandbox.app import DEFAULT_API_KEY, SandboxSettings
from batch_assign.sandbox.faults import FaultPlan, FaultRule, parse_fault_rule
from batch_assign.sandbox.server import RunningSandbox, load_seed, serve_forever, serve_in_thread
from batch_assign.sandbox.store import AuditEntry, Store

__all__ = [
    "DEFAULT_API_KEY",
    "AuditEntry",
    "FaultPlan",
    "FaultRule",
    "RunningSandbox",
    "SandboxSettings",
    "Store",
    "load_seed",
    "parse_fault_rule",
    "serve_forever",
    "serve_in_thread",
]

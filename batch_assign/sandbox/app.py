"""The sandbox's HTTP surface: the Nexor public API endpoints batch-assign uses, on aiohttp.

Order of checks for every request: latency → auth (401) → rate limit (429) → 503 bursts → the
endpoint. For assign-workflow: 500-before → apply → 500-after / drop-after / slow-after.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from batch_assign.sandbox.faults import FaultPlan
from batch_assign.sandbox.store import NotFound, Store

__all__ = ["DEFAULT_API_KEY", "SandboxSettings", "build_app"]

DEFAULT_API_KEY = "nxr_live_sandbox_local_key"
"""The key the sandbox accepts when none is configured; it is a local stand-in, not a secret."""

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PREFIX = "/api/public"
_MAX_BATCH = 1000


@dataclass(slots=True)
class SandboxSettings:
    """Everything that shapes the sandbox's behaviour apart from its data."""

    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    rate_limit: float = 50.0
    burst: int = 50
    rate_limit_headers: bool = True
    faults: FaultPlan = field(default_factory=FaultPlan)
    stats: Counter[str] = field(default_factory=Counter)
    """Requests seen, by `"METHOD kind"` (kind: assign, lead, leads, workflows) and by status."""


class _TokenBucket:
    """Per-key token bucket: `rate` tokens a second, holding at most `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    def take(self) -> tuple[bool, float]:
        """Take one token; returns (allowed, tokens left or seconds until one is free)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True, self.tokens
        return False, (1.0 - self.tokens) / self.rate

    def headers(self, remaining: float) -> dict[str, str]:
        full_in = (self.burst - self.tokens) / self.rate
        return {
            "X-RateLimit-Limit": str(int(self.rate)),
            "X-RateLimit-Remaining": str(max(int(remaining), 0)),
            "X-RateLimit-Reset": str(math.ceil(time.time() + full_in)),
        }


def _error(status: int, error: str, message: str | None = None, **headers: str) -> web.Response:
    body: dict[str, str] = {"error": error}
    if message is not None:
        body["message"] = message
    return web.json_response(body, status=status, headers=headers or None)


def _not_found(what: str) -> web.Response:
    return _error(404, "Not found", f"{what} not found or does not belong to your account")


def _validation(message: str) -> web.Response:
    return _error(400, "Validation error", message)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(store: Store, settings: SandboxSettings) -> web.Application:
    """An aiohttp application serving the API under `/api/public`."""
    buckets: dict[str, _TokenBucket] = {}
    faults = settings.faults
    keys = frozenset(settings.api_keys)

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        settings.stats[f"{request.method} {_kind(request.path)}"] += 1
        response = await _gate(request, handler)
        settings.stats[f"status {response.status}"] += 1
        return response

    async def _gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        delay = faults.delay_s()
        if delay:
            await asyncio.sleep(delay)
        key = request.headers.get("X-API-Key")
        if not key:
            return _error(
                401, "Missing API key", "Please provide your API key in the X-API-Key header"
            )
        if key not in keys:
            return _error(401, "Invalid API key", "The provided API key is not valid")
        limit_headers: dict[str, str] = {}
        if settings.rate_limit > 0:
            bucket = buckets.get(key)
            if bucket is None:
                bucket = buckets[key] = _TokenBucket(settings.rate_limit, settings.burst)
            allowed, value = bucket.take()
            if not allowed:
                wait = max(math.ceil(value), 1)
                headers = {"Retry-After": str(wait)}
                if settings.rate_limit_headers:
                    headers |= bucket.headers(0)
                return _error(
                    429,
                    "Too many requests",
                    f"Rate limit exceeded, retry after {wait} seconds",
                    **headers,
                )
            if settings.rate_limit_headers:
                limit_headers = bucket.headers(value)
        if faults.unavailable():
            return _error(503, "Service unavailable", "The service is temporarily overloaded")
        response = await handler(request)
        if limit_headers and not response.prepared:
            response.headers.update(limit_headers)
        return response

    async def assign_workflow(request: web.Request) -> web.StreamResponse:
        lead_id = request.match_info["id"]
        if not _UUID.match(lead_id):
            return _validation("Lead id must be a valid UUID")
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, UnicodeDecodeError):
            return _validation("Request body must be a JSON object")
        if not isinstance(body, dict):
            return _validation("Request body must be a JSON object")
        workflow_id = body.get("workflowId")
        if workflow_id is None or workflow_id == "":
            return _error(400, "workflowId is required")
        if not isinstance(workflow_id, str) or not _UUID.match(workflow_id):
            return _validation("workflowId must be a valid UUID")
        reason, actor_id = body.get("reason"), body.get("actorId")
        if reason is not None and not isinstance(reason, str):
            return _validation("reason must be a string")
        if actor_id is not None and not isinstance(actor_id, str):
            return _validation("actorId must be a string")
        lead_id, workflow_id = lead_id.lower(), workflow_id.lower()
        if faults.for_assign(lead_id, before=True):
            return web.Response(status=500, text="Internal server error")
        try:
            result = store.assign(lead_id, workflow_id, reason, actor_id)
        except NotFound as missing:
            return _not_found(missing.what)
        after = faults.for_assign(lead_id, before=False)
        if after is not None:
            if after.mode == "500-after":
                return web.Response(status=500, text="Internal server error")
            if after.mode == "drop-after":
                transport = request.transport
                if transport is not None:
                    transport.abort()
                return web.Response(status=500)
            await asyncio.sleep(after.delay_s)
        return web.json_response(
            {
                "workflowRunId": result.workflow_run_id,
                "workflowId": result.workflow_id,
                "workflowName": result.workflow_name,
                "movementType": result.movement_type,
                "paused": result.paused,
            },
            status=201,
        )

    async def get_lead(request: web.Request) -> web.StreamResponse:
        lead_id = request.match_info["id"]
        if not _UUID.match(lead_id):  # the contract has no 400 here: no such lead
            return _not_found("Lead")
        try:
            lead = store.get_lead(lead_id.lower())
        except NotFound:
            return _not_found("Lead")
        return web.json_response({"success": True, "lead": lead, "variables": {}})

    async def create_leads(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, UnicodeDecodeError):
            return _validation("Request body must be a JSON object or array")
        items = body if isinstance(body, list) else [body]
        if not items or len(items) > _MAX_BATCH or not all(isinstance(i, dict) for i in items):
            return _validation(f"Provide one lead object or an array of 1 to {_MAX_BATCH} leads")
        created: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            problem = _lead_problem(item)
            if problem:
                errors.append({"index": index, "error": problem})
                continue
            try:
                lead_id = store.create_lead(item)
            except NotFound:
                errors.append({"index": index, "error": "Workflow not found"})
                continue
            except sqlite3.IntegrityError:
                errors.append({"index": index, "error": "A lead with this id already exists"})
                continue
            created.append(store.get_lead(lead_id))
        if not isinstance(body, list):
            if errors:
                return _validation(errors[0]["error"])
            return web.json_response({"success": True, "lead": created[0]}, status=201)
        status = 201 if created else 400
        return web.json_response(
            {"success": bool(created), "created": created, "errors": errors}, status=status
        )

    async def list_workflows(request: web.Request) -> web.StreamResponse:
        # The contract documents no 400 here: out-of-range or malformed values fall back.
        limit = min(max(_int_param(request, "limit", 50), 1), 200)
        offset = max(_int_param(request, "offset", 0), 0)
        workflows, total = store.list_workflows(limit, offset)
        return web.json_response({"success": True, "workflows": workflows, "total": total})

    async def get_workflow(request: web.Request) -> web.StreamResponse:
        workflow_id = request.match_info["id"]
        if not _UUID.match(workflow_id):
            return _not_found("Workflow")
        try:
            workflow = store.get_workflow(workflow_id.lower())
        except NotFound:
            return _not_found("Workflow")
        return web.json_response({"success": True, "workflow": workflow})

    app = web.Application(middlewares=[gate], client_max_size=8 * 1024 * 1024)
    app.router.add_post(_PREFIX + "/leads/{id}/assign-workflow", assign_workflow)
    app.router.add_get(_PREFIX + "/leads/{id}", get_lead)
    app.router.add_post(_PREFIX + "/leads", create_leads)
    app.router.add_get(_PREFIX + "/workflows", list_workflows)
    app.router.add_get(_PREFIX + "/workflows/{id}", get_workflow)
    return app


def _lead_problem(item: dict[str, Any]) -> str | None:
    if not isinstance(item.get("first_name"), str) or not item["first_name"]:
        return "first_name is required"
    workflow_id = item.get("workflow_id")
    if workflow_id is not None and (
        not isinstance(workflow_id, str) or not _UUID.match(workflow_id)
    ):
        return "workflow_id must be a valid UUID"
    lead_id = item.get("id")
    if lead_id is not None and (not isinstance(lead_id, str) or not _UUID.match(lead_id)):
        return "id must be a valid UUID"
    return None


def _int_param(request: web.Request, name: str, default: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        return default
    return min(value, 2**62)  # SQLite integers are 64-bit


def _kind(path: str) -> str:
    if path.endswith("/assign-workflow"):
        return "assign"
    if "/leads/" in path:
        return "lead"
    return "workflows" if "/workflows" in path else "leads"

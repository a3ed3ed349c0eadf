"""The sandbox speaks the documented API over real HTTP: statuses, bodies, state, limits, faults."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from conftest import World, new_id, start_sandbox

from batch_assign.sandbox import (
    DEFAULT_API_KEY,
    FaultPlan,
    FaultRule,
    RunningSandbox,
    load_seed,
    parse_fault_rule,
)

KEY = {"X-API-Key": DEFAULT_API_KEY}


def client(box: RunningSandbox, timeout: float = 10) -> httpx.Client:
    return httpx.Client(base_url=box.url + "/", headers=KEY, timeout=timeout)


def assign(http: httpx.Client, lead: str, workflow: str, **extra: str) -> httpx.Response:
    return http.post(f"leads/{lead}/assign-workflow", json={"workflowId": workflow, **extra})


def test_enroll_then_reassign_then_same_workflow(sandbox: RunningSandbox, world: World) -> None:
    """Enrollment, reassignment, and re-assigning to the current workflow, as documented."""
    ann, alpha, beta = world.leads["ann"], world.workflows["alpha"], world.workflows["beta"]
    with client(sandbox) as http:
        first = assign(http, ann, alpha, reason="kickoff", actorId="ops")
        second = assign(http, ann, beta, reason="territory change", actorId="ops")
        third = assign(http, ann, beta, reason="again")
        lead = http.get(f"leads/{ann}").json()
    assert [first.status_code, second.status_code, third.status_code] == [201, 201, 201]
    assert [r.json()["movementType"] for r in (first, second, third)] == [
        "enrollment",
        "reassignment",
        "reassignment",
    ]
    body = third.json()
    assert {"workflowRunId", "workflowId", "workflowName", "movementType", "paused"} == set(body)
    assert (beta, "beta", False) == (body["workflowId"], body["workflowName"], body["paused"])
    audit = sandbox.store.audit(ann)
    assert [(None, alpha), (alpha, beta), (beta, beta)] == [
        (a.from_workflow_id, a.to_workflow_id) for a in audit
    ]
    assert [a.reason for a in audit] == ["kickoff", "territory change", "again"]
    assert [a.actor_id for a in audit] == ["ops", "ops", None]
    run = lead["lead"]["active_workflow_run"]
    assert (True, beta, body["workflowRunId"]) == (lead["success"], run["workflow_id"], run["id"])
    assert audit[-1].new_run_id == run["id"]
    # the reason is stored on the run that was deactivated
    assert sandbox.store.deactivation_reasons(ann) == ["territory change", "again"]


def test_paused_comes_from_the_workflow(sandbox: RunningSandbox, world: World) -> None:
    """Assigning to a paused workflow answers paused=true and the run does not start."""
    with client(sandbox) as http:
        body = assign(http, world.leads["bob"], world.workflows["paused-gamma"]).json()
        run = http.get(f"leads/{world.leads['bob']}").json()["lead"]["active_workflow_run"]
    assert body["paused"] is True
    assert (run["run_status"], run["cadence_state"]) == ("paused", "paused")


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        (
            {},
            {
                "error": "Missing API key",
                "message": "Please provide your API key in the X-API-Key header",
            },
        ),
        (
            {"X-API-Key": "nxr_live_wrong"},
            {"error": "Invalid API key", "message": "The provided API key is not valid"},
        ),
    ],
    ids=["missing", "invalid"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "workflows"), ("GET", "leads/{lead}"), ("POST", "leads/{lead}/assign-workflow")],
)
def test_auth_bodies(
    sandbox: RunningSandbox,
    world: World,
    headers: dict[str, str],
    error: dict[str, str],
    method: str,
    path: str,
) -> None:
    """Every endpoint answers the two documented 401 bodies."""
    url = sandbox.url + "/" + path.format(lead=world.leads["ann"])
    response = httpx.request(
        method, url, headers=headers, json={"workflowId": world.workflows["alpha"]}
    )
    assert (401, error) == (response.status_code, response.json())
    assert sandbox.store.audit() == []


@pytest.mark.parametrize(
    ("lead", "body", "status", "expected"),
    [
        ("ann", {}, 400, {"error": "workflowId is required"}),
        (
            "ann",
            {"workflowId": "nope"},
            400,
            {"error": "Validation error", "message": "workflowId must be a valid UUID"},
        ),
        (
            "not-a-uuid",
            {"workflowId": "alpha"},
            400,
            {"error": "Validation error", "message": "Lead id must be a valid UUID"},
        ),
        (
            "unknown",
            {"workflowId": "alpha"},
            404,
            {"error": "Not found", "message": "Lead not found or does not belong to your account"},
        ),
        (
            "ann",
            {"workflowId": "unknown"},
            404,
            {
                "error": "Not found",
                "message": "Workflow not found or does not belong to your account",
            },
        ),
    ],
    ids=["missing-workflow", "bad-workflow", "bad-lead", "unknown-lead", "unknown-workflow"],
)
def test_assign_errors(
    sandbox: RunningSandbox,
    world: World,
    lead: str,
    body: dict[str, str],
    status: int,
    expected: dict[str, str],
) -> None:
    """assign-workflow's 400 and 404 answers carry the documented (or decided) bodies."""
    lead_id = world.leads.get(lead, new_id() if lead == "unknown" else lead)
    if "workflowId" in body:
        value = body["workflowId"]
        body = {"workflowId": world.workflows.get(value, new_id() if value == "unknown" else value)}
    with client(sandbox) as http:
        response = http.post(f"leads/{lead_id}/assign-workflow", json=body)
    assert (status, expected) == (response.status_code, response.json())
    assert sandbox.store.audit() == []


def test_get_lead_shapes_and_404(sandbox: RunningSandbox, world: World) -> None:
    """GET /leads/{id}: the newer wrapped shape; null run when not enrolled; 404 when unknown."""
    with client(sandbox) as http:
        fresh = http.get(f"leads/{world.leads['cid']}")
        missing = http.get(f"leads/{new_id()}")
        bad = http.get("leads/xyz")
    assert fresh.status_code == 200
    assert fresh.json()["lead"]["active_workflow_run"] is None
    assert world.leads["cid"] == fresh.json()["lead"]["id"]
    assert (
        missing.status_code,
        missing.json()["message"],
    ) == (404, "Lead not found or does not belong to your account")
    assert bad.status_code == 404  # the contract has no 400 for GET: no such lead


def test_workflows_pagination_and_lookup(sandbox: RunningSandbox, world: World) -> None:
    """GET /workflows pages with limit/offset/total; GET /workflows/{id} finds one or 404s."""
    with client(sandbox) as http:
        page1 = http.get("workflows", params={"limit": 2}).json()
        page2 = http.get("workflows", params={"limit": 2, "offset": 2}).json()
        one = http.get(f"workflows/{world.workflows['paused-gamma']}").json()
        missing = http.get(f"workflows/{new_id()}")
        too_big = http.get("workflows", params={"limit": 201})
    assert (page1["total"], page2["total"], len(page1["workflows"]), len(page2["workflows"])) == (
        3,
        3,
        2,
        1,
    )
    ids = {w["id"] for w in page1["workflows"] + page2["workflows"]}
    assert set(world.workflows.values()) == ids
    assert (one["success"], one["workflow"]["name"], one["workflow"]["paused"]) == (
        True,
        "paused-gamma",
        True,
    )
    assert missing.status_code == 404
    assert (too_big.status_code, len(too_big.json()["workflows"])) == (200, 3)  # clamped to 200


def test_create_leads_single_and_batch(sandbox: RunningSandbox, world: World) -> None:
    """POST /leads takes one lead or an array (partial success), and can enroll on creation."""
    with client(sandbox) as http:
        single = http.post(
            "leads", json={"first_name": "Zoe", "workflow_id": world.workflows["alpha"]}
        )
        batch = http.post("leads", json=[{"first_name": "Yan"}, {"last_name": "no first name"}])
        too_many = http.post("leads", json=[{"first_name": "x"}] * 1001)
    assert single.status_code == 201
    assert world.workflows["alpha"] == single.json()["lead"]["active_workflow_run"]["workflow_id"]
    assert (
        batch.status_code,
        len(batch.json()["created"]),
        batch.json()["errors"],
    ) == (201, 1, [{"index": 1, "error": "first_name is required"}])
    assert too_many.status_code == 400


def test_rate_limit_429_headers_and_recovery() -> None:
    """An empty bucket answers 429 with Retry-After and X-RateLimit-*; after the wait it serves again."""
    with start_sandbox({"workflows": []}, rate_limit=2, burst=2) as box, client(box) as http:
        ok = [http.get("workflows") for _ in range(2)]
        limited = http.get("workflows")
        time.sleep(float(limited.headers["Retry-After"]))
        again = http.get("workflows")
    assert [r.status_code for r in ok] == [200, 200]
    assert ok[0].headers["X-RateLimit-Remaining"] == "1"
    assert limited.status_code == 429
    assert limited.json() == {
        "error": "Too many requests",
        "message": "Rate limit exceeded, retry after 1 seconds",
    }
    assert (
        limited.headers["Retry-After"],
        limited.headers["X-RateLimit-Limit"],
        limited.headers["X-RateLimit-Remaining"],
    ) == ("1", "2", "0")
    assert int(limited.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert again.status_code == 200


def test_rate_limit_is_per_key() -> None:
    """Each key has its own bucket."""
    from batch_assign.sandbox import SandboxSettings, serve_in_thread

    settings = SandboxSettings(api_keys=("nxr_live_a", "nxr_live_b"), rate_limit=1, burst=1)
    with serve_in_thread(settings=settings) as box:
        a = [
            httpx.get(box.url + "/workflows", headers={"X-API-Key": "nxr_live_a"}) for _ in range(2)
        ]
        b = httpx.get(box.url + "/workflows", headers={"X-API-Key": "nxr_live_b"})
    assert ([r.status_code for r in a], b.status_code) == ([200, 429], 200)


def test_no_rate_headers_when_disabled() -> None:
    """With headers off, only Retry-After is sent (the client must not need the others)."""
    with (
        start_sandbox({"workflows": []}, rate_limit=1, burst=1, headers=False) as box,
        client(box) as http,
    ):
        ok, limited = http.get("workflows"), http.get("workflows")
    assert "X-RateLimit-Remaining" not in ok.headers
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "1")
    assert "X-RateLimit-Limit" not in limited.headers


def _seeded(world: World) -> dict[str, object]:
    return world.seed()


@pytest.mark.parametrize(
    ("mode", "applied"),
    [("500-before", False), ("500-after", True)],
)
def test_500_faults(world: World, mode: str, applied: bool) -> None:
    """500-before applies nothing; 500-after applies the assignment and still answers 500."""
    ann, alpha = world.leads["ann"], world.workflows["alpha"]
    rule = FaultRule(mode, lead_ids=frozenset({ann}), times=1)
    with start_sandbox(_seeded(world), rules=(rule,)) as box, client(box) as http:
        failed = assign(http, ann, alpha)
        retried = assign(http, ann, alpha)  # times=1: the fault fired once
    assert failed.status_code == 500
    assert retried.status_code == 201
    audit = [a.to_workflow_id for a in box.store.audit(ann)]
    assert ([alpha, alpha] if applied else [alpha]) == audit


def test_drop_after_applies_then_closes(world: World) -> None:
    """drop-after applies the assignment, then closes the connection without an answer."""
    ann, alpha = world.leads["ann"], world.workflows["alpha"]
    rule = FaultRule("drop-after", lead_ids=frozenset({ann}))
    with start_sandbox(_seeded(world), rules=(rule,)) as box, client(box) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            assign(http, ann, alpha)
        assert alpha == box.store.active_workflow(ann)
        assert len(box.store.audit(ann)) == 1


def test_slow_after_applies_then_answers_late(world: World) -> None:
    """slow-after applies at once and answers after `delay`: a short client timeout sees none."""
    ann, alpha = world.leads["ann"], world.workflows["alpha"]
    rule = FaultRule("slow-after", lead_ids=frozenset({ann}), delay_s=3)
    with start_sandbox(_seeded(world), rules=(rule,)) as box, client(box, timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):
            assign(http, ann, alpha)
        assert len(box.store.audit(ann)) == 1


def test_503_applies_nothing_on_any_endpoint(world: World) -> None:
    """503 answers every endpoint and applies nothing."""
    rule = FaultRule("503", rate=1.0, burst=1)
    with start_sandbox(_seeded(world), rules=(rule,)) as box, client(box) as http:
        post = assign(http, world.leads["ann"], world.workflows["alpha"])
        get = http.get(f"leads/{world.leads['ann']}")
    assert (post.status_code, get.status_code) == (503, 503)
    assert box.store.audit() == []


def test_503_bursts_are_consecutive_and_seeded() -> None:
    """A 503 rule opens a burst of `burst` answers; the same seed gives the same pattern."""
    rule = FaultRule("503", rate=0.05, burst=4)
    patterns = []
    for _ in range(2):
        plan = FaultPlan((rule,), seed=42)
        patterns.append([plan.unavailable() for _ in range(400)])
    assert patterns[0] == patterns[1]
    runs = "".join("x" if hit else "." for hit in patterns[0]).split(".")
    assert {4} <= {len(run) for run in runs if run}
    assert all(len(run) % 4 == 0 for run in runs if run)


def test_latency_delays_every_request(world: World) -> None:
    """Fixed latency delays each answer by at least that long."""
    with start_sandbox(_seeded(world), latency_ms=200) as box, client(box) as http:
        started = time.perf_counter()
        http.get("workflows")
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.2


def test_fault_rule_syntax(tmp_path: Path) -> None:
    """Fault rules parse from the command-line syntax, lead lists from a file included."""
    ids = tmp_path / "ids.txt"
    ids.write_text("AAAAAAAA-0000-0000-0000-000000000001\n")
    rule = parse_fault_rule(f"drop-after:leads=@{ids}:times=1")
    assert (
        FaultRule(
            "drop-after", lead_ids=frozenset({"aaaaaaaa-0000-0000-0000-000000000001"}), times=1
        )
        == rule
    )
    assert FaultRule("503", rate=0.5, burst=3) == parse_fault_rule("503:rate=0.5:burst=3")
    with pytest.raises(ValueError, match="unknown fault mode"):
        parse_fault_rule("explode:rate=1")
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_fault_rule("500-after:rate=2")


def test_seed_file_loads(tmp_path: Path, world: World) -> None:
    """--seed: workflows and leads (with a current workflow) load from JSON."""
    import json

    from batch_assign.sandbox import serve_in_thread

    seed = world.seed()
    seed["leads"].append(
        {"id": new_id(), "first_name": "Enrolled", "workflow_id": world.workflows["beta"]}
    )
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    with serve_in_thread(seed=load_seed(path)) as box, client(box) as http:
        counts = box.store.counts()
        enrolled = http.get(f"leads/{seed['leads'][-1]['id']}").json()["lead"][
            "active_workflow_run"
        ]
    assert (counts["workflows"], counts["leads"], counts["workflow_runs"], counts["audit"]) == (
        3,
        4,
        1,
        0,
    )
    assert world.workflows["beta"] == enrolled["workflow_id"]
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="workflows"):
        load_seed(bad)


def test_sqlite_persistence(tmp_path: Path, world: World) -> None:
    """With --db, state survives a restart of the sandbox."""
    from batch_assign.sandbox import serve_in_thread

    db = str(tmp_path / "sandbox.sqlite")
    with serve_in_thread(seed=world.seed(), db=db) as box, client(box) as http:
        assign(http, world.leads["ann"], world.workflows["alpha"])
    with serve_in_thread(db=db) as box:
        assert [world.workflows["alpha"]] == [a.to_workflow_id for a in box.store.audit()]
